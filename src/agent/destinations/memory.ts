/**
 * The `memory` destination: files live in the agent's memory only. Used for bot
 * storage where the join method can always join again (Kubernetes), and in tests.
 */

import { checkFileName, type Destination, type DestinationFactory, type FileData } from "./destination.ts";

/** An in-memory destination; `files` is exposed so tests and other outputs can look inside. */
export class MemoryDestination implements Destination {
  readonly description = "memory";
  readonly isPersistent = false;
  readonly files = new Map<string, string>();

  async init(): Promise<void> {}
  async verify(): Promise<void> {}

  async write(name: string, data: FileData): Promise<void> {
    this.files.set(checkFileName(name), typeof data === "string" ? data : Buffer.from(data).toString("utf8"));
  }

  async writeAll(files: Record<string, FileData>): Promise<void> {
    // check every name first so a bad one leaves nothing half written
    for (const name of Object.keys(files)) checkFileName(name);
    for (const [name, data] of Object.entries(files)) await this.write(name, data);
  }

  async read(name: string): Promise<string | undefined> {
    return this.files.get(checkFileName(name));
  }
}

/** The `memory` destination type (registered in builtins.ts). */
export const memoryDestination: DestinationFactory = () => new MemoryDestination();
