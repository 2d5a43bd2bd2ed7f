/**
 * Admin operations behind `ctl`: resources (create/get/rm), `bots add`,
 * `tokens add`, bot instances, locks and the audit log. Every change is one
 * atomic write together with its audit event, and every input is validated
 * before anything is stored.
 */

import { keyId, parsePublicKey } from "../crypto/index.ts";
import { parseDuration } from "../lib/duration.ts";
import { alreadyExists, badParameter, notFound } from "../lib/errors.ts";
import type { AddBotRequest, AddBotResponse, AddTokenRequest, AuditEvent, BotInstance, Lock, LockRequest } from "../protocol/index.ts";
import {
  parseResource,
  tokenFingerprint,
  type BotResource,
  type BoundKeypairStatus,
  type Resource,
  type RoleResource,
  type TokenResource,
} from "../resources/index.ts";
import { actorFields, auditTarget, event, EVENT, type Actor } from "./audit.ts";
import type { AuthContext } from "./context.ts";
import { randomId } from "./issuer.ts";
import { KEYS, RESOURCE_PREFIX, lockName, type BotInstanceRecord, type LockRecord, type LockTarget } from "./keys.ts";
import type { ConditionalOp, Item, StoredEvent } from "./storage/index.ts";

/** Most resources one list request returns. */
export const MAX_PAGE = 1000;

/** Default lifetime of a one-time join token made by `bots add` / `tokens add`. */
export const DEFAULT_TOKEN_TTL_MS = 3_600_000;
const MAX_TOKEN_TTL_MS = 7 * 86_400_000;

function prefixOf(kind: string): string {
  const p = RESOURCE_PREFIX[kind];
  if (!p) throw badParameter(`Unknown resource kind "${kind}": allowed kinds are ${Object.keys(RESOURCE_PREFIX).map((k) => `"${k}"`).join(", ")}`);
  return p;
}

/** A stored resource as clients see it: with its revision in metadata. */
function present<T extends Resource>(item: Item<T>): T {
  return { ...item.value, metadata: { ...item.value.metadata, revision: item.revision } };
}

/** Strips what clients may send but only the service decides. */
function forStorage<T extends Resource>(r: T): T {
  const { revision: _revision, ...metadata } = r.metadata as T["metadata"] & { revision?: string };
  return { ...r, metadata } as T;
}

export class Admin {
  constructor(private readonly ctx: AuthContext) {}

  /**
   * One page of resources of `kind`, in name order, after `startAfter`. `next` is set
   * when there may be more: pages keep the service's memory bounded however many bots
   * there are.
   */
  async listResources(kind: string, page: { limit?: number; startAfter?: string } = {}): Promise<{ items: Resource[]; next?: string }> {
    const prefix = prefixOf(kind);
    const limit = Math.min(Math.max(1, page.limit ?? MAX_PAGE), MAX_PAGE);
    const items = await this.ctx.backend.list<Resource>(prefix, {
      limit,
      ...(page.startAfter !== undefined ? { startAfter: prefix + page.startAfter } : {}),
    });
    const out = items.map(present);
    return items.length === limit ? { items: out, next: out[out.length - 1]!.metadata.name } : { items: out };
  }

  async getResource(kind: string, name: string): Promise<Resource> {
    const item = await this.ctx.backend.get<Resource>(prefixOf(kind) + name);
    if (!item) throw notFound(`${kind} "${name}" not found`);
    return present(item);
  }

  /**
   * Validates and stores `raw` resources all-or-nothing. Without `force` an
   * existing resource is an ALREADY_EXISTS error; with it, it is replaced (a
   * token keeps the status the service maintains).
   */
  async createResources(raw: unknown[], force: boolean, actor: Actor): Promise<string[]> {
    if (raw.length === 0) throw badParameter("Nothing to create: the request holds no resources");
    const resources = raw.map((r) => forStorage(parseResource(r)));
    const now = this.ctx.clock.now();
    const batch = new Map(resources.map((r) => [`${r.kind}/${r.metadata.name}`, r]));
    if (batch.size !== resources.length) throw badParameter("The same resource appears twice in one request");
    const ops: ConditionalOp[] = [];
    const events: Omit<StoredEvent, "id">[] = [];
    for (const r of resources) {
      const key = prefixOf(r.kind) + r.metadata.name;
      const existing = await this.ctx.backend.get<Resource>(key);
      if (existing && !force) {
        throw alreadyExists(`${r.kind} "${r.metadata.name}" already exists: use --force to replace it`);
      }
      await this.checkReferences(r, batch);
      const prior = existing?.value as TokenResource | undefined;
      const made: { token: Resource; reset?: BoundKeypairStatus } = r.kind === "token" ? this.withTokenStatus(r as TokenResource, prior) : { token: r };
      ops.push({
        key,
        condition: existing ? { kind: "revision", revision: existing.revision } : { kind: "notExists" },
        action: { kind: "put", value: made.token },
      });
      events.push(
        event(existing ? EVENT.resourceUpdate : EVENT.resourceCreate, now, {
          kind: r.kind,
          name: r.kind === "token" ? tokenFingerprint(r.metadata.name) : r.metadata.name,
          ...actorFields(actor),
        }),
      );
      if (made.reset && prior) this.resetBinding(prior, made.reset, ops, events, now, actor);
    }
    await this.ctx.backend.atomicWrite(ops, events);
    this.ctx.audit.logged(events);
    return resources.map((r) => `${r.kind}/${r.kind === "token" ? tokenDisplayName(r as TokenResource) : r.metadata.name}`);
  }

  /** A bot's roles must exist; a token's bot must exist; a bound key must parse. */
  private async checkReferences(r: Resource, batch: Map<string, Resource>): Promise<void> {
    const exists = async (kind: string, name: string) =>
      batch.has(`${kind}/${name}`) || (await this.ctx.backend.get(prefixOf(kind) + name)) !== undefined;
    if (r.kind === "bot") {
      for (const role of (r as BotResource).spec.roles ?? []) {
        if (!(await exists("role", role))) {
          throw badParameter(`Bot "${r.metadata.name}" refers to role "${role}", which does not exist: create the role first`, { field: "spec.roles" });
        }
      }
    } else if (r.kind === "token") {
      const t = r as TokenResource;
      if (!(await exists("bot", t.spec.bot_name))) {
        throw badParameter(`Token refers to bot "${t.spec.bot_name}", which does not exist: create the bot first`, { field: "spec.bot_name" });
      }
      const key = t.spec.bound_keypair?.onboarding?.initial_public_key;
      if (key) parsePublicKey(key, "spec.bound_keypair.onboarding.initial_public_key");
    }
  }

  /**
   * The service-maintained status of a token: kept across updates, initialised on
   * create with a new incarnation. An update that changes how the token onboards (its
   * `initial_public_key` or `registration_secret`) starts over as a new incarnation:
   * `reset` is then the status it replaces, whose binding the caller must undo.
   */
  private withTokenStatus(t: TokenResource, existing: TokenResource | undefined): { token: TokenResource; reset?: BoundKeypairStatus } {
    if (t.spec.join_method !== "bound_keypair") {
      const { status: _status, ...rest } = t;
      return { token: rest as TokenResource };
    }
    const prior = existing?.spec.join_method === "bound_keypair" ? existing.status?.bound_keypair : undefined;
    const onboarding = t.spec.bound_keypair?.onboarding ?? {};
    const reset = prior && onboardingChanged(existing!, t) ? prior : undefined;
    const status = (!reset && prior) || {
      incarnation: randomId(16),
      recovery_count: 0,
      ...(onboarding.initial_public_key || onboarding.registration_secret ? {} : { registration_secret: randomId(16) }),
    };
    return { token: { ...t, status: { bound_keypair: status } }, ...(reset ? { reset } : {}) };
  }

  /**
   * Undoes the binding an onboarding change replaced, in the same write: the instance the
   * old key joined is deleted (its renewals stop; the old key can no longer join, since
   * the token now expects the new onboarding), and the reset is audited.
   */
  private resetBinding(prior: TokenResource, old: BoundKeypairStatus, ops: ConditionalOp[], events: Omit<StoredEvent, "id">[], now: Date, actor: Actor): void {
    const bot = prior.spec.bot_name;
    if (old.bound_bot_instance_id) {
      ops.push({ key: KEYS.instance(bot, old.bound_bot_instance_id), condition: { kind: "whatever" }, action: { kind: "delete" } });
    }
    events.push(
      event(EVENT.tokenBindingReset, now, {
        token: tokenFingerprint(prior.metadata.name),
        bot,
        reason: "spec.bound_keypair.onboarding changed",
        ...(old.bound_public_key ? { previous_key: keyId(parsePublicKey(old.bound_public_key)) } : {}),
        ...(old.bound_bot_instance_id ? { bot_instance_id: old.bound_bot_instance_id } : {}),
        ...actorFields(actor),
      }),
    );
  }

  async deleteResource(kind: string, name: string, actor: Actor): Promise<void> {
    if (kind === "bot") return this.deleteBot(name, actor);
    const key = prefixOf(kind) + name;
    const item = await this.ctx.backend.get<Resource>(key);
    if (!item) throw notFound(`${kind} "${name}" not found`);
    if (kind === "role") {
      const users = (await this.ctx.backend.list<BotResource>(RESOURCE_PREFIX.bot!)).filter((b) => b.value.spec.roles?.includes(name));
      if (users.length > 0) {
        throw badParameter(`Cannot delete role "${name}": bot${users.length > 1 ? "s" : ""} ${users.map((b) => `"${b.value.metadata.name}"`).join(", ")} still use${users.length > 1 ? "" : "s"} it`);
      }
    }
    const now = this.ctx.clock.now();
    const shown = kind === "token" ? tokenFingerprint(name) : name;
    const ev = [event(EVENT.resourceDelete, now, { kind, name: shown, ...actorFields(actor) })];
    await this.ctx.backend.atomicWrite([{ key, condition: { kind: "revision", revision: item.revision }, action: { kind: "delete" } }], ev);
    this.ctx.audit.logged(ev);
  }

  /** Deletes a bot with its tokens and instances, in one write. */
  async deleteBot(name: string, actor: Actor): Promise<void> {
    const b = this.ctx.backend;
    const bot = await b.get<BotResource>(KEYS.bot(name));
    if (!bot) throw notFound(`bot "${name}" not found`);
    const tokens = (await b.list<TokenResource>(RESOURCE_PREFIX.token!)).filter((t) => t.value.spec.bot_name === name);
    const instances = await b.list<BotInstanceRecord>(KEYS.instances(name));
    const ops: ConditionalOp[] = [bot, ...tokens, ...instances].map((i) => ({
      key: i.key,
      condition: { kind: "revision", revision: i.revision },
      action: { kind: "delete" },
    }));
    const ev = [event(EVENT.botDelete, this.ctx.clock.now(), { bot: name, tokens: tokens.length, instances: instances.length, ...actorFields(actor) })];
    await b.atomicWrite(ops, ev);
    this.ctx.audit.logged(ev);
  }

  /** `bots add`: the bot and its first join token, created together. */
  async addBot(req: AddBotRequest, actor: Actor): Promise<AddBotResponse> {
    const now = this.ctx.clock.now();
    const bot: BotResource = parseResource({
      kind: "bot",
      version: "v1",
      metadata: { name: req.name },
      spec: { roles: req.roles, ...(req.logins?.length ? { traits: [{ name: "logins", values: req.logins }] } : {}) },
    }) as BotResource;
    if (await this.ctx.backend.get(KEYS.bot(req.name))) throw alreadyExists(`bot "${req.name}" already exists`);
    const method = req.join_method ?? (req.initial_public_key || req.registration_secret ? "bound_keypair" : "token");
    const { token, registrationSecret } = this.newToken(
      req.name,
      method,
      {
        ...(req.ttl_seconds ? { ttl_seconds: req.ttl_seconds } : {}),
        ...(req.initial_public_key ? { initial_public_key: req.initial_public_key } : {}),
        ...(req.registration_secret ? { registration_secret: req.registration_secret } : {}),
        ...(req.recovery_mode ? { recovery_mode: req.recovery_mode } : {}),
        ...(req.recovery_limit !== undefined ? { recovery_limit: req.recovery_limit } : {}),
      },
      now,
    );
    await this.checkReferences(bot, new Map([[`bot/${req.name}`, bot]]));
    if (req.initial_public_key) parsePublicKey(req.initial_public_key, "--initial-public-key");
    const ops: ConditionalOp[] = [
      { key: KEYS.bot(req.name), condition: { kind: "notExists" }, action: { kind: "put", value: bot } },
      { key: KEYS.token(token.metadata.name), condition: { kind: "notExists" }, action: { kind: "put", value: token } },
    ];
    const ev = [
      event(EVENT.botCreate, now, { bot: req.name, roles: req.roles, ...actorFields(actor) }),
      event(EVENT.tokenCreate, now, { bot: req.name, join_method: method, token: tokenFingerprint(token.metadata.name), ...actorFields(actor) }),
    ];
    await this.ctx.backend.atomicWrite(ops, ev);
    this.ctx.audit.logged(ev);
    return {
      bot: req.name,
      token: token.metadata.name,
      join_method: method,
      ca_pins: [this.ctx.authorities.caPin],
      ...(token.metadata.expires ? { expires: token.metadata.expires } : {}),
      ...(registrationSecret ? { registration_secret: registrationSecret } : {}),
    };
  }

  /** `tokens add`: a new join token for an existing bot. */
  async addToken(req: AddTokenRequest, actor: Actor): Promise<AddBotResponse> {
    const now = this.ctx.clock.now();
    if (!(await this.ctx.backend.get(KEYS.bot(req.bot_name)))) {
      throw notFound(`bot "${req.bot_name}" not found: create it with "ctl bots add" first`);
    }
    if (req.join_method === "kubernetes") {
      throw badParameter(`Cannot make a kubernetes token with "tokens add": it needs a JWKS and allow rules; write a token resource and use "ctl create -f"`);
    }
    const { token, registrationSecret } = this.newToken(
      req.bot_name,
      req.join_method,
      { ...(req.ttl_seconds !== undefined ? { ttl_seconds: req.ttl_seconds } : {}), ...(req.name !== undefined ? { name: req.name } : {}) },
      now,
    );
    const ev = [event(EVENT.tokenCreate, now, { bot: req.bot_name, join_method: req.join_method, token: tokenFingerprint(token.metadata.name), ...actorFields(actor) })];
    await this.ctx.backend.atomicWrite(
      [{ key: KEYS.token(token.metadata.name), condition: { kind: "notExists" }, action: { kind: "put", value: token } }],
      ev,
    );
    this.ctx.audit.logged(ev);
    return {
      bot: req.bot_name,
      token: token.metadata.name,
      join_method: req.join_method,
      ca_pins: [this.ctx.authorities.caPin],
      ...(token.metadata.expires ? { expires: token.metadata.expires } : {}),
      ...(registrationSecret ? { registration_secret: registrationSecret } : {}),
    };
  }

  private newToken(
    bot: string,
    method: string,
    opts: { ttl_seconds?: number; name?: string; initial_public_key?: string; registration_secret?: string; recovery_mode?: string; recovery_limit?: number },
    now: Date,
  ): { token: TokenResource; registrationSecret?: string } {
    const ttl = opts.ttl_seconds === undefined ? DEFAULT_TOKEN_TTL_MS : opts.ttl_seconds * 1000;
    if (ttl > MAX_TOKEN_TTL_MS) throw badParameter(`Invalid --ttl: a join token may live at most 168h`);
    const expires = new Date(now.getTime() + ttl).toISOString();
    if (method === "token") {
      const token = parseResource({
        kind: "token",
        version: "v2",
        metadata: { name: opts.name ?? randomId(16), expires },
        spec: { roles: ["Bot"], bot_name: bot, join_method: "token" },
      }) as TokenResource;
      return { token };
    }
    if (method !== "bound_keypair") throw badParameter(`Unsupported join method "${method}" for a generated token: use "token" or "bound_keypair"`);
    const registrationSecret = opts.initial_public_key ? undefined : (opts.registration_secret ?? randomId(16));
    const parsed = parseResource({
      kind: "token",
      version: "v2",
      metadata: { name: opts.name ?? `bkp-${bot}-${randomId(4)}` },
      spec: {
        roles: ["Bot"],
        bot_name: bot,
        join_method: "bound_keypair",
        bound_keypair: {
          onboarding: opts.initial_public_key
            ? { initial_public_key: opts.initial_public_key }
            : { registration_secret: registrationSecret, must_register_before: expires },
          recovery: { mode: opts.recovery_mode ?? "standard", limit: opts.recovery_limit ?? 1 },
        },
      },
    }) as TokenResource;
    const { token } = this.withTokenStatus(parsed, undefined);
    return registrationSecret ? { token, registrationSecret } : { token };
  }

  async listBotInstances(bot?: string): Promise<BotInstance[]> {
    const items = await this.ctx.backend.list<BotInstanceRecord>(KEYS.instances(bot));
    const out: BotInstance[] = [];
    for (const { value: i } of items) {
      const locked = (await this.ctx.backend.get(KEYS.lock({ kind: "bot_instance", name: i.instance_id }))) !== undefined;
      out.push({
        bot_name: i.bot_name,
        instance_id: i.instance_id,
        created_at: i.created_at,
        join_method: i.join_method,
        ...(i.token_name ? { token_name: i.join_method === "token" ? tokenFingerprint(i.token_name) : i.token_name } : {}),
        generation: i.generation,
        ...(i.last_renewed_at ? { last_renewed_at: i.last_renewed_at } : {}),
        ...(i.expires_at ? { expires_at: i.expires_at } : {}),
        ...(i.remote_addr ? { remote_addr: i.remote_addr } : {}),
        locked,
      });
    }
    return out;
  }

  async lock(req: LockRequest, actor: Actor): Promise<Lock> {
    const targets: LockTarget[] = [];
    if (req.bot_instance_id) targets.push({ kind: "bot_instance", name: req.bot_instance_id });
    if (req.bot) targets.push({ kind: "bot", name: req.bot });
    if (req.token) targets.push({ kind: "token", name: req.token });
    if (targets.length !== 1) throw badParameter("A lock needs exactly one target: --bot-instance, --bot or --token");
    const target = targets[0]!;
    if (target.kind === "bot_instance" && !(await this.findInstance(target.name))) {
      throw notFound(`bot instance "${target.name}" not found`);
    }
    const now = this.ctx.clock.now();
    const record: LockRecord = {
      target,
      created_at: now.toISOString(),
      ...(req.message ? { message: req.message } : {}),
      ...(actor.user ? { created_by: actor.user } : {}),
    };
    const expires = req.ttl_seconds ? new Date(now.getTime() + req.ttl_seconds * 1000) : undefined;
    const ev = [event(EVENT.lockCreate, now, { target: auditTarget(target), message: req.message, ...actorFields(actor) })];
    await this.ctx.backend.atomicWrite(
      [{ key: KEYS.lock(target), condition: { kind: "whatever" }, action: { kind: "put", value: record, ...(expires ? { expires } : {}) } }],
      ev,
    );
    this.ctx.audit.logged(ev);
    return toLock(record, expires);
  }

  async unlock(name: string, actor: Actor): Promise<void> {
    const [kind, ...rest] = name.split("/");
    const target = { kind, name: rest.join("/") } as LockTarget;
    if (!["bot_instance", "bot", "token"].includes(kind ?? "") || !target.name) {
      throw badParameter(`Invalid lock name "${name}": expected "bot_instance/<id>", "bot/<name>" or "token/<name>"`);
    }
    const item = await this.ctx.backend.get<LockRecord>(KEYS.lock(target));
    if (!item) throw notFound(`lock "${name}" not found`);
    const ev = [event(EVENT.lockDelete, this.ctx.clock.now(), { target: auditTarget(target), ...actorFields(actor) })];
    await this.ctx.backend.atomicWrite([{ key: item.key, condition: { kind: "revision", revision: item.revision }, action: { kind: "delete" } }], ev);
    this.ctx.audit.logged(ev);
  }

  async listLocks(): Promise<Lock[]> {
    return (await this.ctx.backend.list<LockRecord>(KEYS.locks)).map((i) => toLock(i.value, i.expires));
  }

  async listEvents(q: { type?: string; since?: string; limit?: number }): Promise<AuditEvent[]> {
    let since: Date | undefined;
    if (q.since) {
      // digits, letters and dots only: a duration ago ("1h", and "10" gets "add a unit");
      // anything else is a time
      since = /^[\d.]+[\da-zµ.]*$/.test(q.since) ? new Date(this.ctx.clock.now().getTime() - parseDuration(q.since, "--since")) : new Date(q.since);
      if (Number.isNaN(since.getTime())) throw badParameter(`Invalid --since "${q.since}": use an RFC 3339 time or a duration such as "1h"`);
    }
    const events = await this.ctx.backend.listEvents({
      ...(q.type ? { types: q.type.split(",") } : {}),
      ...(since ? { since } : {}),
      limit: Math.min(q.limit ?? 1000, 10_000),
      // the newest `limit` events, as `tail` shows them: fetched newest first, returned oldest first
      order: "desc",
    });
    return events.reverse().map((e) => ({ id: e.id, type: e.type, time: e.time.toISOString(), fields: e.fields }));
  }

  async findInstance(id: string): Promise<Item<BotInstanceRecord> | undefined> {
    return (await this.ctx.backend.list<BotInstanceRecord>(KEYS.instances())).find((i) => i.value.instance_id === id);
  }

  async counts(): Promise<Record<string, number>> {
    const b = this.ctx.backend;
    return {
      roles: await b.count(RESOURCE_PREFIX.role!),
      bots: await b.count(RESOURCE_PREFIX.bot!),
      tokens: await b.count(RESOURCE_PREFIX.token!),
      bot_instances: await b.count(KEYS.instances()),
      locks: await b.count(KEYS.locks),
    };
  }
}

function toLock(r: LockRecord, expires?: Date): Lock {
  return {
    name: lockName(r.target),
    target: { [r.target.kind]: r.target.name },
    ...(r.message ? { message: r.message } : {}),
    created_at: r.created_at,
    ...(expires ? { expires: expires.toISOString() } : {}),
  };
}

/**
 * How a token is named in the answers to admin requests: a `token`-method token's name
 * is its secret, so only its fingerprint is shown (events show every token that way).
 */
export function tokenDisplayName(t: TokenResource): string {
  return t.spec.join_method === "token" ? tokenFingerprint(t.metadata.name) : t.metadata.name;
}

/** Whether `next` onboards differently from `prior`: another initial key (compared as keys) or registration secret. */
function onboardingChanged(prior: TokenResource, next: TokenResource): boolean {
  const a = prior.spec.bound_keypair?.onboarding ?? {};
  const b = next.spec.bound_keypair?.onboarding ?? {};
  if (a.registration_secret !== b.registration_secret) return true;
  if (a.initial_public_key === undefined || b.initial_public_key === undefined) return a.initial_public_key !== b.initial_public_key;
  const id = (k: string) => {
    try {
      return keyId(parsePublicKey(k));
    } catch {
      return k.trim();
    }
  };
  return id(a.initial_public_key) !== id(b.initial_public_key);
}
