/**
 * The Output contract and the registry of output builders: each output type
 * registers a builder, and the agent builds every configured output through it,
 * handing each the same dependencies object.
 */

import type { Clock } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log.ts";
import type { DestinationConfig, OutputConfig } from "../../config/index.ts";
import type { BotCertsRequest, BotCertsResponse, KubernetesClusterInfo } from "../../protocol/index.ts";
import type { BotIdentity } from "../bot/index.ts";
import type { Destination } from "../destinations/index.ts";
import { Registry } from "../registry.ts";

/** What every output may use. */
export interface OutputDeps {
  /** Issues role certificates with the bot's current identity. */
  botCerts(req: BotCertsRequest): Promise<BotCertsResponse>;
  /** The Kubernetes clusters the bot's roles reach, with their labels (asked with the bot's current identity). */
  kubernetesClusters(): Promise<KubernetesClusterInfo[]>;
  /** The bot's current renewable identity (for its name and the auth address). */
  identity(): BotIdentity | undefined;
  destination(config: DestinationConfig): Destination;
  credentialTtlMs: number;
  clock: Clock;
  log: Logger;
}

/**
 * One configured output. `init()` prepares the destination and is idempotent;
 * `render()` gets fresh certificates and writes every file of the output, or
 * throws and leaves what was there before untouched.
 */
export interface Output {
  /** Unique among the agent's outputs, e.g. `identity:/opt/machine-id`; used in /readyz and metrics. */
  readonly name: string;
  readonly destination: Destination;
  init(): Promise<void>;
  render(): Promise<void>;
}

/** Builds outputs of one type. */
export interface OutputBuilder<T extends OutputConfig["type"] = OutputConfig["type"]> {
  type: T;
  build(config: Extract<OutputConfig, { type: T }>, deps: OutputDeps, index: number): Output;
}

const builders = new Registry<OutputBuilder>("Output type");

/**
 * Registers the builder for one output type; a later registration replaces an earlier
 * one. Returns a function that puts back what was registered before (for tests).
 */
export function registerOutput<T extends OutputConfig["type"]>(builder: OutputBuilder<T>): () => void {
  return builders.register(builder.type, builder as unknown as OutputBuilder);
}

/** Builds the output a config describes; NOT_IMPLEMENTED when no builder is registered for its type. */
export function buildOutput(config: OutputConfig, deps: OutputDeps, index: number): Output {
  return builders.get(config.type).build(config as never, deps, index);
}

/** A readable, unique name for an output: its type and where it writes. */
export function outputName(type: string, destination: Destination, index: number): string {
  return destination.path ? `${type}:${destination.path}` : `${type}:${destination.description}#${index}`;
}
