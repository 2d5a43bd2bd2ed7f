/**
 * The `bound_keypair` join method, agent side: ask the auth service for a challenge,
 * sign it with the key bound to the token, present the join state of the previous
 * join, rotate the key when the token asks for it. Static keys (file or
 * environment) take the place of the stored key on hosts without storage.
 */

import { readFile } from "node:fs/promises";
import { formatSshPublicKey, generateKeyPair, keyId, signCompactJws, sshFingerprint, type KeyPair } from "../../crypto/index.ts";
import { AppError, accessDenied, badParameter, isAppError } from "../../lib/errors.ts";
import { fsError } from "../../lib/fs.ts";
import type { BoundKeypairBeginResponse, ChallengeClaims, JoinResponse } from "../../protocol/index.ts";
import type { OnboardingConfig } from "../../config/index.ts";
import { publicKeys, type JoinContext, type JoinMethod } from "../bot/index.ts";
import { BoundKeyStore, type BoundKeypairState } from "./_keystore.ts";
import { loadStaticKey, type StaticKey } from "./_static_key.ts";

/** The algorithm of keys the agent generates itself (registration, rotation without a current key). */
export const BOUND_KEY_ALGORITHM = "ed25519" as const;

/**
 * Signs the challenge claims, exactly as issued, as a compact JWS (EdDSA for Ed25519,
 * ES256 for P-256): what jose's CompactSign wrote, without loading jose for one signature.
 */
export async function signChallenge(claims: ChallengeClaims, key: KeyPair): Promise<string> {
  return signCompactJws({ alg: key.algorithm === "ed25519" ? "EdDSA" : "ES256" }, JSON.stringify(claims), key.privateKey);
}

/** The registration secret from the config value or its file (trimmed), if any. */
async function registrationSecret(bk: OnboardingConfig["boundKeypair"]): Promise<string | undefined> {
  if (bk.registrationSecret !== undefined) return bk.registrationSecret;
  if (bk.registrationSecretPath === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(bk.registrationSecretPath, "utf8");
  } catch (e) {
    throw fsError("read registration secret", bk.registrationSecretPath, e);
  }
  const secret = text.trim();
  if (secret === "") throw badParameter(`Cannot read registration secret "${bk.registrationSecretPath}": the file is empty`);
  return secret;
}

/** Options for tests; the registered method reads the real environment. */
export interface BoundKeypairJoinOptions {
  env?: Record<string, string | undefined>;
}

/** Builds the join method; `boundKeypairJoin` is the one registered. */
export function boundKeypairJoinMethod(options: BoundKeypairJoinOptions = {}): JoinMethod {
  return {
    name: "bound_keypair",
    // The keypair proves the bot again whenever its identity expired.
    rejoinable: true,
    join: (ctx) => joinBoundKeypair(ctx, options.env ?? process.env),
  };
}

async function joinBoundKeypair(ctx: JoinContext, env: Record<string, string | undefined>): Promise<JoinResponse> {
  const token = ctx.onboarding.token;
  if (!token) {
    throw badParameter(`Join method "bound_keypair" needs the join token's name: set onboarding.token or pass --token (the registration secret goes in onboarding.bound_keypair.registration_secret)`);
  }
  const secret = await registrationSecret(ctx.onboarding.boundKeypair);
  // Read before anything is sent, so a bad key changes nothing anywhere.
  const staticKey = await loadStaticKey(ctx.onboarding.boundKeypair.staticPrivateKeyPath, env);
  const keys = new BoundKeyStore(ctx.store);
  const state = await keys.loadState();
  return staticKey ? joinStatic(ctx, token, secret, staticKey, keys, state) : joinStored(ctx, token, secret, keys, state);
}

/** The begin request both modes send. */
function beginRequest(ctx: JoinContext, token: string, state: BoundKeypairState, secret: string | undefined, present: KeyPair | undefined) {
  return {
    token_name: token,
    ttl_seconds: ctx.ttlSeconds,
    ...publicKeys(ctx.key),
    ...(present ? { public_key: formatSshPublicKey(present.publicKey) } : {}),
    ...(state.joinState ? { join_state: state.joinState } : {}),
    // Only until the first join has succeeded: afterwards the service has bound a key and ignores it.
    ...(secret && !state.joinState ? { registration_secret: secret } : {}),
  };
}

/**
 * Adds where the refused key came from to a "does not match" answer from the service
 * (`details.reason` "wrong_key"; the code alone, ACCESS_DENIED, also covers a wrong
 * registration secret, where a key fingerprint would mislead).
 */
function explainMismatch(e: unknown, key: KeyPair, source: string): unknown {
  if (isAppError(e, "ACCESS_DENIED") && e.details?.reason === "wrong_key") {
    return accessDenied(`${e.message}; the key presented is the ${source} (${sshFingerprint(key.publicKey)})`, { cause: e, details: e.details });
  }
  return e;
}

async function joinStatic(
  ctx: JoinContext,
  token: string,
  secret: string | undefined,
  sk: StaticKey,
  keys: BoundKeyStore,
  state: BoundKeypairState,
): Promise<JoinResponse> {
  ctx.log.info("Joining with a static bound key", { token, key: sshFingerprint(sk.key.publicKey), source: sk.source });
  let begun: BoundKeypairBeginResponse;
  try {
    begun = await ctx.client.boundKeypairBegin(beginRequest(ctx, token, state, secret, sk.key));
  } catch (e) {
    throw explainMismatch(e, sk.key, sk.source);
  }
  // Both checks come before the answer, so the refused join consumes nothing.
  if (begun.rotate) {
    throw badParameter(
      `Join token "${token}" asks for a new key (spec.bound_keypair.rotate_after), but a static key cannot rotate: remove rotate_after from the token, or create a new key with "machine-id keypair create --static" and a new token for it`,
    );
  }
  if (begun.recovery_mode !== "insecure") {
    throw badParameter(
      `Join token "${token}" uses recovery mode "${begun.recovery_mode}", but a static key needs "insecure": a host without storage cannot present the previous join state; set spec.bound_keypair.recovery.mode to insecure`,
    );
  }
  if (begun.challenge.sub !== keyId(sk.key.publicKey)) {
    throw accessDenied(`The auth service asked for a signature by another key than the ${sk.source}: the token is bound to a different key`);
  }
  const res = await ctx.client.boundKeypairSolve({ challenge_id: begun.challenge_id, solution: await signChallenge(begun.challenge, sk.key) });
  // Kept for the record only: insecure mode does not check it.
  if (res.join_state) await keys.saveState({ ...state, joinState: res.join_state });
  return res;
}

async function joinStored(
  ctx: JoinContext,
  token: string,
  secret: string | undefined,
  keys: BoundKeyStore,
  initial: BoundKeypairState,
): Promise<JoinResponse> {
  let state = initial;
  let current = await keys.loadKey();
  if (!current) {
    if (!secret) {
      throw badParameter(
        `No bound keypair in ${keys.description}: run "machine-id keypair create --storage DIR" and put its public key in the token's initial_public_key, set onboarding.bound_keypair.registration_secret, or use a static key (${"$"}TBOT_BOUND_KEYPAIR_STATIC_KEY or static_private_key_path)`,
      );
    }
    // Stored before the service sees it: if the answer is lost, the key it bound is not.
    current = generateKeyPair(BOUND_KEY_ALGORITHM);
    await keys.saveKey(current);
    ctx.log.info("Generated a bound keypair to register with the registration secret", { key: sshFingerprint(current.publicKey) });
  }

  // A rotation whose answer was lost: the service may hold either key. Present none
  // and let the challenge's subject say which one it expects.
  const pending = state.pendingKey;
  let begun: BoundKeypairBeginResponse;
  try {
    begun = await ctx.client.boundKeypairBegin(beginRequest(ctx, token, state, secret, pending ? undefined : current));
  } catch (e) {
    throw explainMismatch(e, current, `key in ${keys.description}`);
  }
  const sub = begun.challenge.sub;
  if (pending && keyId(pending.publicKey) === sub && keyId(current.publicKey) !== sub) {
    ctx.log.info("The auth service holds the key of an earlier rotation: making it the bound key", { key: sshFingerprint(pending.publicKey) });
    state = await keys.promote(pending, current, state, "rotated", ctx.clock.now());
    current = pending;
  } else if (pending) {
    const { pendingKey: _unused, ...rest } = state;
    state = rest;
    await keys.saveState(state);
  }
  if (keyId(current.publicKey) !== sub) {
    throw accessDenied(`Join token "${token}" is bound to another key than the one in ${keys.description} (${sshFingerprint(current.publicKey)})`);
  }

  const solution = await signChallenge(begun.challenge, current);
  if (!begun.rotate) {
    const res = await ctx.client.boundKeypairSolve({ challenge_id: begun.challenge_id, solution });
    if (res.join_state) await keys.saveState({ ...state, joinState: res.join_state });
    return res;
  }

  const next = generateKeyPair(current.algorithm);
  // Written before the request: if the answer is lost, the next join can still sign with it.
  state = { ...state, pendingKey: next };
  await keys.saveState(state);
  ctx.log.info("The join token asks for a new key: rotating", { old_key: sshFingerprint(current.publicKey), new_key: sshFingerprint(next.publicKey) });
  const res = await ctx.client.boundKeypairSolve({
    challenge_id: begun.challenge_id,
    solution,
    new_public_key: formatSshPublicKey(next.publicKey),
    new_key_solution: await signChallenge(begun.challenge, next),
  });
  // The join state first: it is what the next join cannot do without.
  state = { ...state, ...(res.join_state ? { joinState: res.join_state } : {}) };
  await keys.saveState(state);
  await keys.promote(next, current, state, "rotated", ctx.clock.now());
  return res;
}

/** The registered method (reads $TBOT_BOUND_KEYPAIR_STATIC_KEY from the process environment). */
export const boundKeypairJoin: JoinMethod = boundKeypairJoinMethod();
