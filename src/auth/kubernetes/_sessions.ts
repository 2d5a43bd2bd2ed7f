/**
 * The live Kubernetes sessions of this auth service: upgraded connections (exec,
 * attach, port-forward) and long answers (watches, `logs -f`). It caps concurrent
 * upgraded sessions, and makes locks reach what is already open: every few seconds it
 * looks up locks for the bots and instances with something open and ends what a lock
 * now covers, and at once when a lock is created through this process. Looking locks
 * up in storage (rather than only being told by the admin API) is what makes a lock
 * created through another replica sharing the database apply too. A config reload that
 * removes or changes a cluster ends what is open on it (`endCluster`).
 */

import { errorMessage } from "../../lib/errors.ts";
import { EVENT } from "../audit.ts";
import type { AuthContext } from "../context.ts";
import { findLock, lockName, type LockTarget } from "../keys.ts";

/** A session refused by a cap; `reason` is what the audit records. */
export class SessionLimitReached extends Error {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

/** Caps on concurrent upgraded sessions (`limits` in auth.yaml). */
export interface KubeSessionLimits {
  /** In total, across bots. */
  total: number;
  /** Of one bot instance. */
  perInstance: number;
}

export const DEFAULT_SESSION_LIMITS: KubeSessionLimits = { total: 1024, perInstance: 64 };

/** How often open sessions' bots and instances are checked for locks. */
const LOCK_RECHECK_MS = 2_000;

/** Who a session belongs to. */
export interface SessionOwner {
  bot: string;
  instance?: string;
  /** The proxied cluster it runs on: a reload that removes or changes it ends the session. */
  cluster?: string;
}

/** One open session, as the registry holds it. */
interface Live extends SessionOwner {
  /** Upgrades count against the caps; streams are only watched for locks. */
  kind: "upgrade" | "stream";
  /** Ends the session now; `why` is recorded as how it ended. Called at most once. */
  end(why: string, detail?: string): void;
}

/** A slot in the registry: release it when the session is over, whatever ended it. */
export interface SessionSlot {
  release(): void;
}

export class KubeSessions {
  private readonly live = new Set<Live>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  /** A lock arrived while a check ran: check once more after it. */
  private again = false;
  private readonly unwatch: () => void;

  constructor(
    private readonly ctx: AuthContext,
    private readonly limits: KubeSessionLimits = DEFAULT_SESSION_LIMITS,
    private readonly recheckMs = LOCK_RECHECK_MS,
  ) {
    this.unwatch = ctx.audit.watch((type) => {
      if (type === EVENT.lockCreate && this.live.size > 0) void this.recheck();
    });
  }

  /** Upgraded sessions open now, in total and of one instance. */
  count(instance?: string): number {
    let n = 0;
    for (const s of this.live) if (s.kind === "upgrade" && (instance === undefined || s.instance === instance)) n++;
    return n;
  }

  /**
   * Registers a session. An upgrade past a cap is refused with SessionLimitReached (nothing
   * is registered then). `end` is how the registry stops it (a lock, the service closing).
   */
  open(owner: SessionOwner, kind: Live["kind"], end: Live["end"]): SessionSlot {
    if (kind === "upgrade") {
      if (this.count() >= this.limits.total) {
        throw new SessionLimitReached(`Too many Kubernetes sessions through the auth service (${this.limits.total}): try again later`, "session limit reached (total)");
      }
      if (owner.instance && this.count(owner.instance) >= this.limits.perInstance) {
        throw new SessionLimitReached(
          `Too many Kubernetes sessions of bot instance "${owner.instance}" (${this.limits.perInstance}): end one or try again later`,
          "session limit reached (bot instance)",
        );
      }
    }
    let ended = false;
    const s: Live = {
      ...owner,
      kind,
      end: (why, detail) => {
        if (ended) return;
        ended = true;
        end(why, detail);
      },
    };
    this.live.add(s);
    if (!this.timer) {
      this.timer = setInterval(() => void this.recheck(), this.recheckMs);
      this.timer.unref?.();
    }
    return {
      release: () => {
        ended = true;
        this.live.delete(s);
        if (this.live.size === 0 && this.timer) {
          clearInterval(this.timer);
          this.timer = undefined;
        }
      },
    };
  }

  /** Ends every session a lock now covers; one lookup per distinct bot and instance. */
  async recheck(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    this.again = false;
    try {
      const owners = new Map<string, LockTarget[]>();
      for (const s of this.live) {
        const key = `${s.bot}\0${s.instance ?? ""}`;
        if (!owners.has(key)) owners.set(key, [...(s.instance ? [{ kind: "bot_instance" as const, name: s.instance }] : []), { kind: "bot" as const, name: s.bot }]);
      }
      for (const [key, targets] of owners) {
        const lock = await findLock(this.ctx.backend, targets);
        if (!lock) continue;
        for (const s of [...this.live]) if (`${s.bot}\0${s.instance ?? ""}` === key) s.end("locked", lockName(lock.target));
      }
    } catch (e) {
      // storage unreachable: sessions stay, the next round tries again
      this.ctx.log.warn("Cannot check locks for open Kubernetes sessions", { error: errorMessage(e) });
    } finally {
      this.checking = false;
    }
    if (this.again) await this.recheck();
  }

  /**
   * Ends every session on `cluster` (a reload removed or changed it), recording `why`
   * and `detail` as how each ended. Returns how many it ended.
   */
  endCluster(cluster: string, why: string, detail?: string): number {
    let n = 0;
    for (const s of [...this.live]) {
      if (s.cluster !== cluster) continue;
      s.end(why, detail);
      n++;
    }
    return n;
  }

  /** Ends every session (the service is stopping). */
  close(): void {
    this.unwatch();
    for (const s of [...this.live]) s.end("service_stopping");
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * `body` passed through unchanged, registered with `sessions` as a long answer of
 * `owner` (a watch, `logs -f`): when a lock covers the owner, or a reload removes or
 * changes its cluster, the answer ends there (the client sees the stream close, and
 * its next request is refused or goes to the new upstream) and the upstream request
 * is cancelled; `ended` records why.
 */
export function trackedStream(
  sessions: KubeSessions | undefined,
  owner: SessionOwner,
  body: ReadableStream<Uint8Array>,
  ended: (why: string, detail?: string) => void,
): ReadableStream<Uint8Array> {
  if (!sessions) return body;
  const reader = body.getReader();
  let slot: SessionSlot | undefined;
  let closed = false;
  const finish = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    slot?.release();
    if (closed) return;
    closed = true;
    try {
      controller.close();
    } catch {
      // already errored (the upstream failed mid-read): nothing left to close
    }
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      slot = sessions.open(owner, "stream", (why, detail) => {
        finish(controller);
        void reader.cancel().catch(() => {});
        ended(why, detail);
      });
    },
    async pull(controller) {
      let r: Awaited<ReturnType<typeof reader.read>>;
      try {
        r = await reader.read();
      } catch (e) {
        // the upstream failed: the stream errors, and its slot must not stay registered
        closed = true;
        slot?.release();
        throw e;
      }
      if (r.done) finish(controller);
      else if (!closed) controller.enqueue(r.value);
    },
    cancel(reason) {
      slot?.release();
      return reader.cancel(reason);
    },
  });
}
