/**
 * Bound keypair joining for the agent: the `bound_keypair` join method (builtins.ts
 * registers it), static keys, and the keypair kept in the bot's storage.
 */

export { boundKeypairJoin, boundKeypairJoinMethod, signChallenge, BOUND_KEY_ALGORITHM, type BoundKeypairJoinOptions } from "./join.ts";
export { STATIC_KEY_ENV, checkStaticKeyMode, decodeStaticKeyEnv, loadStaticKey, readStaticKeyFile, type StaticKey } from "./_static_key.ts";
export {
  BoundKeyStore,
  BOUND_KEY_FILE,
  BOUND_PUBLIC_KEY_FILE,
  BOUND_STATE_FILE,
  KEY_HISTORY_LIMIT,
  retired,
  type BoundKeypairState,
  type KeyHistoryEntry,
} from "./_keystore.ts";
