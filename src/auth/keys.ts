/**
 * Typed access to what the auth service keeps in its backend: the key layout
 * (docs/design.md) and the records that are not user-facing resources
 * (bot instances, locks).
 */

import type { BotResource, TokenResource } from "../resources/index.ts";
import type { Backend, Item } from "./storage/index.ts";

export const KEYS = {
  role: (name: string) => `/roles/${name}`,
  bot: (name: string) => `/bots/${name}`,
  token: (name: string) => `/tokens/${name}`,
  instance: (bot: string, id: string) => `/bot_instances/${bot}/${id}`,
  instances: (bot?: string) => (bot ? `/bot_instances/${bot}/` : "/bot_instances/"),
  lock: (target: LockTarget) => `/locks/${target.kind}/${target.name}`,
  locks: "/locks/",
  challenge: (id: string) => `/challenges/${id}`,
  /** The pending challenges of one token: ids are `<tag>/<random>`, tag from the token's fingerprint. */
  challenges: (tag: string) => `/challenges/${tag}/`,
  /** A CI ID token that joined (by hash of issuer and jti), kept until the token expires: it joins once. */
  usedIdToken: (hash: string) => `/used_id_tokens/${hash}`,
} as const;

/** The resource kinds the service stores, with their key prefix. */
export const RESOURCE_PREFIX: Record<string, string> = { role: "/roles/", bot: "/bots/", token: "/tokens/" };

/** One joined copy of a bot: created by a join, advanced by each renewal. */
export interface BotInstanceRecord {
  bot_name: string;
  instance_id: string;
  created_at: string;
  join_method: string;
  token_name?: string;
  /** Generation of the newest renewable certificate issued to this instance. */
  generation: number;
  /** keyId of the public key certified by the newest renewal (to recognise a retried renewal). */
  last_key_id?: string;
  last_renewed_at?: string;
  /** Expiry of the newest renewable certificate. */
  expires_at?: string;
  remote_addr?: string;
  /** Bound keypair: the public key the instance joined with. */
  bound_public_key?: string;
}

export interface LockTarget {
  kind: "bot_instance" | "bot" | "token";
  name: string;
}

export interface LockRecord {
  target: LockTarget;
  message?: string;
  created_at: string;
  created_by?: string;
}

export async function getBot(b: Backend, name: string): Promise<Item<BotResource> | undefined> {
  return b.get<BotResource>(KEYS.bot(name));
}
export async function getToken(b: Backend, name: string): Promise<Item<TokenResource> | undefined> {
  return b.get<TokenResource>(KEYS.token(name));
}

/** The first lock that applies to any of `targets`, if one does (one read for all of them). */
export async function findLock(b: Backend, targets: LockTarget[]): Promise<LockRecord | undefined> {
  const items = await b.getMany<LockRecord>(targets.map(KEYS.lock));
  return items.find((it) => it !== undefined)?.value;
}

/** The stored name of a lock, as `ctl` shows it: `bot_instance/<id>`. */
export function lockName(t: LockTarget): string {
  return `${t.kind}/${t.name}`;
}
