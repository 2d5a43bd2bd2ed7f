/**
 * The audit trail: every join, refusal, issuance and admin change is an event in
 * the storage backend's append-only log. Secrets never go in: join tokens, of every
 * join method, are recorded by their fingerprint (`tokenFingerprint` in resources),
 * never by name.
 */

import type { Logger } from "../lib/log.ts";
import { tokenFingerprint } from "../resources/index.ts";
import { lockName, type LockTarget } from "./keys.ts";
import type { Backend, StoredEvent } from "./storage/index.ts";

/** Event types, stable strings other tools may filter on. */
export const EVENT = {
  botJoin: "bot.join",
  joinFailed: "join.failed",
  certCreate: "cert.create",
  hostCertCreate: "cert.host_create",
  generationMismatch: "cert.generation_mismatch",
  generationRollback: "cert.generation_rollback",
  joinStateRollback: "join_state.rollback",
  renewFailed: "cert.renew_failed",
  resourceCreate: "resource.create",
  resourceUpdate: "resource.update",
  resourceDelete: "resource.delete",
  botCreate: "bot.create",
  botDelete: "bot.delete",
  tokenCreate: "token.create",
  lockCreate: "lock.create",
  lockDelete: "lock.delete",
  tokenLocked: "token.locked",
  /** `create --force` changed a bound_keypair token's onboarding: the old binding is gone. */
  tokenBindingReset: "token.binding_reset",
  authStart: "auth.start",
  /** The janitor deleted events older than the retention (`count`, cutoff `before`). */
  auditPruned: "audit.pruned",
  /** A request through the Kubernetes proxy, allowed or denied. */
  kubeRequest: "kube.request",
  /** An exec, attach or port-forward session through the Kubernetes proxy began (after the API server's 101). */
  kubeSessionStart: "kube.session.start",
  /** It ended: `duration_ms`, bytes each way, and how (`ended`); a port-forward's `ports` and how they were seen (`ports_observed`). */
  kubeSessionEnd: "kube.session.end",
  /** A port-forward session opened its first stream to a port (`port`): once per distinct port. */
  kubePortForward: "kube.portforward",
  /** A watch or follow stream through the Kubernetes proxy was cut by a lock or a reload of its cluster (`ended`). */
  kubeStreamEnd: "kube.stream.end",
  /**
   * SIGHUP reloaded the auth config: `kubernetes_clusters` applied live (`added`,
   * `removed`, `changed` cluster names, `clusters` served now) and the settings that
   * changed but wait for a restart (`needs_restart`).
   */
  authConfigReload: "auth.config.reload",
} as const;

export type EventType = (typeof EVENT)[keyof typeof EVENT];

/** Who did something: an admin username, a bot instance, or an unauthenticated address. */
export interface Actor {
  user?: string;
  botName?: string;
  botInstanceId?: string;
  remoteAddr?: string;
}

/** A lock's target as events name it: a token only by its fingerprint. */
export function auditTarget(t: LockTarget): string {
  return t.kind === "token" ? `token/${tokenFingerprint(t.name)}` : lockName(t);
}

export function actorFields(actor: Actor): Record<string, unknown> {
  const f: Record<string, unknown> = {};
  if (actor.user) f.user = actor.user;
  if (actor.botName) f.bot = actor.botName;
  if (actor.botInstanceId) f.bot_instance_id = actor.botInstanceId;
  if (actor.remoteAddr) f.remote_addr = actor.remoteAddr;
  return f;
}

/** Builds an event to hand to `Backend.atomicWrite` together with the change it records. */
export function event(type: EventType, time: Date, fields: Record<string, unknown>): Omit<StoredEvent, "id"> {
  return { type, time, fields };
}

/** Writes events on their own (for refusals, which change nothing else) and logs them. */
export class AuditLog {
  private readonly watchers = new Set<(type: string) => void>();

  constructor(
    private readonly backend: Backend,
    private readonly logger: Logger,
  ) {}

  /**
   * Calls `fn` with the type of every event this process records from now on (after it
   * is written); for reactions within this process, such as ending sessions at a lock.
   * Returns the way to stop.
   */
  watch(fn: (type: string) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  async emit(type: EventType, time: Date, fields: Record<string, unknown>): Promise<void> {
    this.logger.info(type, fields);
    try {
      await this.backend.appendEvent(event(type, time, fields));
    } catch (e) {
      // The refusal itself must still reach the caller; a lost audit record is logged loudly.
      this.logger.error("Cannot write audit event", { type, error: e });
    }
    for (const w of this.watchers) w(type);
  }

  /** Logs events that were committed as part of an atomic write. */
  logged(events: Omit<StoredEvent, "id">[]): void {
    for (const e of events) this.logger.info(e.type, e.fields);
    for (const e of events) for (const w of this.watchers) w(e.type);
  }
}
