/**
 * The bound keypair in the bot's storage (standard, non-static mode): `id_bkp` and
 * `id_bkp.pub`, and `bound_keypair.json` with the join state, a rotation in flight
 * and a short history of the keys this bot has retired.
 */

import * as z from "zod";
import { lazy } from "../../lib/lazy.ts";
import { formatSshPublicKey, keyId, parsePrivateKey, privateKeyToPem, type KeyPair } from "../../crypto/index.ts";
import { badParameter } from "../../lib/errors.ts";
import { decode } from "../../protocol/index.ts";
import type { BotStore } from "../bot/index.ts";

/** File names in the bot's storage. */
export const BOUND_KEY_FILE = "id_bkp";
export const BOUND_PUBLIC_KEY_FILE = "id_bkp.pub";
export const BOUND_STATE_FILE = "bound_keypair.json";

/** How many retired keys the history keeps (newest first). */
export const KEY_HISTORY_LIMIT = 5;

const HistoryEntry = lazy(() => z.object({
  public_key: z.string(),
  key_id: z.string(),
  retired_at: z.string(),
  /** `rotated`: the service asked for a new key; `replaced`: `keypair create --overwrite`. */
  reason: z.enum(["rotated", "replaced"]),
}));
export type KeyHistoryEntry = z.infer<typeof HistoryEntry>;

const StateDoc = lazy(() => z.object({
  version: z.literal(1),
  /** The join-state document of the last join, presented on the next one. */
  join_state: z.string().optional(),
  /**
   * A new key sent for rotation whose answer has not been stored yet (PKCS#8 PEM). If
   * the answer was lost, the service may have bound it: the next challenge says which.
   */
  pending_key: z.string().optional(),
  key_history: z.array(HistoryEntry).default([]),
}));

/** What `bound_keypair.json` holds. */
export interface BoundKeypairState {
  joinState?: string;
  pendingKey?: KeyPair;
  history: KeyHistoryEntry[];
}

/** Reads and writes the bound keypair through the bot's storage (atomic, 0600 files). */
export class BoundKeyStore {
  constructor(private readonly store: BotStore) {}

  get description(): string {
    return this.store.description;
  }

  /** `id_bkp`, or undefined when this storage holds no bound key yet. */
  async loadKey(): Promise<KeyPair | undefined> {
    const text = await this.store.readState(BOUND_KEY_FILE);
    if (text === undefined || text.trim() === "") return undefined;
    return parsePrivateKey(text, `bound key "${BOUND_KEY_FILE}" in ${this.description}`);
  }

  /** Replaces `id_bkp` and `id_bkp.pub` together. */
  async saveKey(key: KeyPair): Promise<void> {
    await this.store.destination.writeAll({
      [BOUND_KEY_FILE]: privateKeyToPem(key.privateKey),
      [BOUND_PUBLIC_KEY_FILE]: formatSshPublicKey(key.publicKey) + "\n",
    });
  }

  async loadState(): Promise<BoundKeypairState> {
    const text = await this.store.readState(BOUND_STATE_FILE);
    if (text === undefined || text.trim() === "") return { history: [] };
    const where = `"${BOUND_STATE_FILE}" in ${this.description}`;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw badParameter(`Cannot read the bound keypair state ${where}: it is not JSON`);
    }
    const d = decode(StateDoc, json, `bound keypair state ${where}`);
    return {
      ...(d.join_state ? { joinState: d.join_state } : {}),
      ...(d.pending_key ? { pendingKey: parsePrivateKey(d.pending_key, `pending rotation key in ${where}`) } : {}),
      history: d.key_history,
    };
  }

  async saveState(s: BoundKeypairState): Promise<void> {
    const doc: z.infer<typeof StateDoc> = {
      version: 1,
      ...(s.joinState ? { join_state: s.joinState } : {}),
      ...(s.pendingKey ? { pending_key: privateKeyToPem(s.pendingKey.privateKey) } : {}),
      key_history: s.history.slice(0, KEY_HISTORY_LIMIT),
    };
    await this.store.writeState(BOUND_STATE_FILE, JSON.stringify(doc, null, 2) + "\n");
  }

  /**
   * Makes `next` the bound key and records `previous` in the history. The state is
   * written last: until then a crash leaves `pendingKey` in place, and the next join
   * finds out from the challenge which key the service holds.
   */
  async promote(next: KeyPair, previous: KeyPair | undefined, state: BoundKeypairState, reason: KeyHistoryEntry["reason"], now: Date): Promise<BoundKeypairState> {
    await this.saveKey(next);
    const { pendingKey: _done, ...rest } = state;
    const updated: BoundKeypairState = {
      ...rest,
      history: previous && keyId(previous.publicKey) !== keyId(next.publicKey) ? [retired(previous, reason, now), ...state.history] : state.history,
    };
    await this.saveState(updated);
    return updated;
  }
}

/** A history entry for a key retired now. */
export function retired(key: KeyPair, reason: KeyHistoryEntry["reason"], now: Date): KeyHistoryEntry {
  return { public_key: formatSshPublicKey(key.publicKey), key_id: keyId(key.publicKey), retired_at: now.toISOString(), reason };
}
