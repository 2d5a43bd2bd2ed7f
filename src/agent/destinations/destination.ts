/**
 * The Destination contract outputs and bot storage write through, and the registry
 * of destination types: each type registers a factory, so adding one (a Kubernetes
 * Secret, say) never touches the code that writes.
 */

import { badParameter } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log.ts";
import type { DestinationConfig } from "../../config/index.ts";
import { Registry } from "../registry.ts";

/** File contents a destination stores. */
export type FileData = string | Uint8Array;

/**
 * Somewhere credentials are written. Contract:
 * - `init()` creates what is missing (directory, secret…) and is idempotent.
 * - `verify()` checks the destination is safe to write (ownership, modes, symlinks)
 *   and throws an AppError naming the problem; it changes nothing.
 * - `write(name, data)` replaces one file atomically: a reader sees the old or the new
 *   content, never a mix. `writeAll` replaces several: every file is staged before
 *   the first becomes visible, so a failure part-way leaves the previous set intact.
 * - `read(name)` returns the content or undefined when the file does not exist.
 * Names are plain file names (`key`, `tlscert`), never paths.
 */
export interface Destination {
  /** For logs and errors, e.g. `directory "/opt/machine-id"`. */
  readonly description: string;
  /** Whether what is written survives a restart of the agent. */
  readonly isPersistent: boolean;
  /** Absolute directory files land in, when the destination is a directory (for ssh_config paths). */
  readonly path?: string;
  init(): Promise<void>;
  verify(): Promise<void>;
  write(name: string, data: FileData): Promise<void>;
  writeAll(files: Record<string, FileData>): Promise<void>;
  read(name: string): Promise<string | undefined>;
}

/** What a destination factory gets besides its config. */
export interface DestinationDeps {
  log: Logger;
}

/** Builds a destination of one type from its config. */
export type DestinationFactory = (config: DestinationConfig, deps: DestinationDeps) => Destination;

const factories = new Registry<DestinationFactory>("Destination type");

/** Registers the factory for destination `type`, replacing an earlier one; returns the undo (for tests). */
export function registerDestination(type: DestinationConfig["type"], factory: DestinationFactory): () => void {
  return factories.register(type, factory);
}

/** Builds the destination a config describes; NOT_IMPLEMENTED for a type this build does not provide. */
export function createDestination(config: DestinationConfig, deps: DestinationDeps): Destination {
  return factories.get(config.type)(config, deps);
}

/** Refuses anything but a plain file name, so a name can never climb out of its destination. */
export function checkFileName(name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "." || name === "..") {
    throw badParameter(`Invalid file name "${name}": expected a plain name such as "tlscert"`);
  }
  return name;
}
