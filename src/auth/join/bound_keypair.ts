/**
 * Bound keypair joining, the auth side: a challenge the agent signs with the key
 * bound to its token, recovery limits, the signed join state that catches cloned
 * keypairs, and key rotation. Every state change of one join is a single
 * compare-and-swap on the token, committed with the new bot instance.
 */

import { randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";
import { jwtVerify } from "jose";
import { formatSshPublicKey, keyAlgorithmOf, keyId, parsePublicKey, signCompactJws, sshFingerprint, verifyCompactJws } from "../../crypto/index.ts";
import { AppError, accessDenied, badParameter, expired, limitExceeded, locked } from "../../lib/errors.ts";
import {
  BoundKeypairBeginRequest,
  BoundKeypairSolveRequest,
  ROUTES,
  type BoundKeypairBeginResponse,
  type ChallengeClaims,
  type JoinResponse,
  type KeyRequest,
} from "../../protocol/index.ts";
import { tokenExpired, tokenFingerprint, type BotResource, type BoundKeypairStatus, type TokenResource } from "../../resources/index.ts";
import { auditTarget, event, EVENT } from "../audit.ts";
import type { Caller } from "../bots.ts";
import type { AuthContext } from "../context.ts";
import { randomId } from "../issuer.ts";
import { KEYS, type LockRecord, type LockTarget } from "../keys.ts";
import { FailureLimiter, type AddressLimit } from "../ratelimit.ts";
import type { Item } from "../storage/index.ts";
import {
  GENERIC_TOKEN_ERROR,
  audited,
  joinRoute,
  parseKeys,
  refuse,
  type Refusal,
  startInstance,
  type JoinAttempt,
  type JoinKeys,
  type JoinMethod,
  checkUnlockedBot,
  unlockedBot,
  unlockedBotKeys,
} from "./instance.ts";

/** A challenge must be answered within this long. */
const CHALLENGE_TTL_MS = 60_000;
/** Backdating of `nbf`, for agents whose clock runs a little behind. */
const CHALLENGE_SKEW_MS = 10_000;
const ALGORITHMS = ["EdDSA", "ES256"];
/**
 * Unanswered challenges one token may have at a time. Each `begin` writes a row before
 * anyone is authenticated; an agent needs one, a retrying one a few.
 */
export const MAX_PENDING_CHALLENGES = 10;

/** What the service remembers about an issued challenge until it is answered or expires. */
interface StoredChallenge {
  token_name: string;
  /** The token's bot when the challenge was issued, so solve reads the token, locks and bot at once. */
  bot_name?: string;
  claims: ChallengeClaims;
  /** The public key (authorized_keys form) whose signature answers this challenge. */
  expected_key: string;
  /** Registration-secret onboarding: bind expected_key when the answer checks out. */
  registering: boolean;
  rotate: boolean;
  request: KeyRequest;
  join_state?: string;
}

/** Claims of the join-state document handed to the agent after each join. */
interface JoinStateClaims {
  /** The token that issued the state, and which creation of it (`status.incarnation`). */
  token_name: string;
  token_incarnation: string;
  bot_instance_id: string;
  recovery_sequence: number;
  recovery_limit: number;
  recovery_mode: string;
}

function keyText(k: KeyObject): string {
  return formatSshPublicKey(k);
}

/** A public key as a join uses it: the key, its keyId and its authorized_keys form. */
interface BoundKey {
  key: KeyObject;
  id: string;
  text: string;
}

/**
 * Bound keys parsed before, by their exact text. A join parsed the same bound key five
 * times (its stored text, the key presented, the challenge's subject), ~4 % of a join's
 * CPU; parsing is a pure function of the text, so a bounded map of the last ones is safe.
 */
const parsedKeys = new Map<string, BoundKey>();
const BOUND_KEYS_CACHED = 4096;
/** Longer texts (a key with a long comment, as anyone may present at begin) are parsed each time: the map stays small. */
const CACHED_TEXT_MAX = 512;

/** The parsed key of `text` (BAD_PARAMETER naming `what` when it is not one). */
function parsedKey(text: string, what?: string): BoundKey {
  let k = parsedKeys.get(text);
  if (!k) {
    const key = parsePublicKey(text, what);
    k = { key, id: keyId(key), text: keyText(key) };
    if (text.length > CACHED_TEXT_MAX) return k;
    if (parsedKeys.size >= BOUND_KEYS_CACHED) parsedKeys.delete(parsedKeys.keys().next().value!);
    parsedKeys.set(text, k);
  }
  return k;
}

function sameKey(a: string, b: string): boolean {
  return a === b || parsedKey(a).id === parsedKey(b).id;
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

interface Loaded {
  token: TokenResource;
  revision: string;
  status: BoundKeypairStatus;
  bot: BotResource;
}

/**
 * Loads the token and its bot, and runs the checks that change nothing: method, expiry,
 * lock, bot. An unknown token and one of another join method get the same answer: the
 * name of a `token` token is its secret, and begin must not confirm a guess.
 */
async function loadToken(ctx: AuthContext, name: string, attempt: JoinAttempt, knownBot?: string): Promise<Loaded> {
  // with the bot's name known (solve: its challenge recorded it) the token, the locks and the bot are one read
  const [item, ...botReads] =
    knownBot === undefined
      ? [await ctx.backend.get<TokenResource>(KEYS.token(name))]
      : ((await ctx.backend.getMany([KEYS.token(name), ...unlockedBotKeys(name, knownBot)])) as [Item<TokenResource> | undefined, ...(Item<unknown> | undefined)[]]);
  if (!item) throw refuse(accessDenied(GENERIC_TOKEN_ERROR), "token not found");
  const token = item.value;
  attempt.bot = token.spec.bot_name;
  if (token.spec.join_method !== "bound_keypair" || !token.spec.bound_keypair) {
    throw refuse(accessDenied(GENERIC_TOKEN_ERROR), `token is for join method ${token.spec.join_method}`);
  }
  if (tokenExpired(token, ctx.clock.now())) {
    throw refuse(expired(`Join token "${name}" expired at ${token.metadata.expires}: ask an admin for a new token`), `token expired at ${token.metadata.expires}`);
  }
  const bot = knownBot === token.spec.bot_name ? checkUnlockedBot(botReads, knownBot) : await unlockedBot(ctx, name, token.spec.bot_name);
  return { token, revision: item.revision, status: token.status?.bound_keypair ?? {}, bot };
}

/** Refuses when standard recovery has no joins left. */
function checkRecoveryLimit(t: TokenResource, status: BoundKeypairStatus): void {
  const { mode, limit } = t.spec.bound_keypair!.recovery;
  const count = status.recovery_count ?? 0;
  if (mode === "standard" && count >= limit) {
    throw limitExceeded(
      `Recovery limit reached for token "${t.metadata.name}": ${count} of ${limit} joins used; raise spec.bound_keypair.recovery.limit to allow another`,
      { details: { recovery_count: count, recovery_limit: limit } },
    );
  }
}

function mustRegisterBefore(t: TokenResource, now: Date): void {
  const before = t.spec.bound_keypair!.onboarding.must_register_before;
  if (before && new Date(before).getTime() <= now.getTime()) {
    throw expired(`Join token "${t.metadata.name}" had to be registered before ${before}: ask an admin for a new token`);
  }
}

/** Step 1: checks the request and issues a challenge for the key that must answer it. */
async function begin(ctx: AuthContext, req: BoundKeypairBeginRequest, attempt: JoinAttempt): Promise<BoundKeypairBeginResponse> {
  const request: KeyRequest = {
    public_tls_key: req.public_tls_key,
    public_ssh_key: req.public_ssh_key,
    ...(req.ttl_seconds ? { ttl_seconds: req.ttl_seconds } : {}),
  };
  const keys = parseKeys(request); // a malformed key is found now, not after the challenge
  const presented = req.public_key ? parsedKey(req.public_key, "public_key").text : undefined;
  const { token, status } = await loadToken(ctx, req.token_name, attempt);
  const bk = token.spec.bound_keypair!;
  const now = ctx.clock.now();

  let expectedKey: string;
  let registering = false;
  try {
    if (status.bound_public_key) {
      expectedKey = status.bound_public_key;
    } else if (bk.onboarding.initial_public_key) {
      mustRegisterBefore(token, now);
      expectedKey = parsedKey(bk.onboarding.initial_public_key, "spec.bound_keypair.onboarding.initial_public_key").text;
      registering = true;
    } else {
      mustRegisterBefore(token, now);
      const secret = status.registration_secret ?? bk.onboarding.registration_secret;
      if (!secret) throw accessDenied(`Join token "${token.metadata.name}" has no key bound and no registration secret left: ask an admin for a new token`);
      if (!req.registration_secret) {
        throw badParameter(`Join token "${token.metadata.name}" needs its registration secret: set onboarding.bound_keypair.registration_secret`);
      }
      if (!constantTimeEqual(req.registration_secret, secret)) throw accessDenied(`Wrong registration secret for join token "${token.metadata.name}"`);
      if (!presented) throw badParameter("Registering with a secret needs the new public key (public_key)");
      expectedKey = presented;
      registering = true;
    }
    if (presented && !sameKey(presented, expectedKey)) {
      // Public-key fingerprints, as ssh-keygen -lf prints them: the holder of the token
      // can compare them with the key it has; nothing secret is in them.
      const fp = (k: string) => sshFingerprint(parsedKey(k).key);
      throw accessDenied(
        `The key presented (${fp(presented)}) does not match the public key bound to join token "${token.metadata.name}" (${fp(expectedKey)}); use the private key of ${fp(expectedKey)} (ssh-keygen -lf prints a key's fingerprint), or ask an admin for a new token`,
        { details: { reason: "wrong_key", presented: fp(presented), bound: fp(expectedKey) } },
      );
    }
    checkRecoveryLimit(token, status);
  } catch (e) {
    if (e instanceof AppError) throw refuseNamingToken(e, token.metadata.name);
    throw e;
  }

  const rotate =
    bk.rotate_after !== undefined &&
    new Date(bk.rotate_after).getTime() <= now.getTime() &&
    (!status.last_rotated_at || new Date(status.last_rotated_at).getTime() < new Date(bk.rotate_after).getTime());
  const secs = (ms: number) => Math.floor(ms / 1000);
  const claims: ChallengeClaims = {
    iss: ctx.authorities.cluster,
    aud: ctx.authorities.cluster,
    sub: parsedKey(expectedKey).id,
    nbf: secs(now.getTime() - CHALLENGE_SKEW_MS),
    iat: secs(now.getTime()),
    exp: secs(now.getTime() + CHALLENGE_TTL_MS),
    nonce: randomBytes(32).toString("base64url"),
  };
  const tag = challengeTag(req.token_name);
  const pending = await ctx.backend.list(KEYS.challenges(tag), { limit: MAX_PENDING_CHALLENGES });
  if (pending.length >= MAX_PENDING_CHALLENGES) {
    throw refuse(
      limitExceeded(`Join token "${token.metadata.name}" has ${MAX_PENDING_CHALLENGES} unanswered challenges: answer one, or try again in a minute when they expire`, {
        details: { pending_challenges: pending.length, retry_after_seconds: CHALLENGE_TTL_MS / 1000 },
      }),
      "too many pending challenges",
    );
  }
  // the token's tag leads the id, so the pending challenges of one token are one directory of keys
  const id = `${tag}/${randomId(16)}`;
  const challenge: StoredChallenge = {
    token_name: req.token_name,
    bot_name: token.spec.bot_name,
    claims,
    expected_key: expectedKey,
    registering,
    rotate,
    request,
    ...(req.join_state ? { join_state: req.join_state } : {}),
  };
  // not durable: a challenge lost to a power failure only makes its answer fail (start
  // again), and an idle service answers begin without waiting for an fsync
  await ctx.backend.create(KEYS.challenge(id), challenge, { expires: new Date(now.getTime() + CHALLENGE_TTL_MS), durable: false });
  if (begunKeys.size >= BEGUN_KEYS_KEPT) begunKeys.delete(begunKeys.keys().next().value!);
  begunKeys.set(id, keys);
  return { challenge_id: id, challenge: claims, rotate, recovery_mode: bk.recovery.mode };
}

/**
 * The request keys each begin parsed, by challenge id, for the solve that follows on this
 * service: the same keys as the stored challenge's `request` (the id is new to each
 * challenge). Parsing them again was ~2 % of a join; a solve that finds none here (on
 * another replica, or after many begins) parses the stored ones.
 */
const begunKeys = new Map<string, JoinKeys>();
const BEGUN_KEYS_KEPT = 1024;

/** The part of a challenge id that names its token: hex of the token's fingerprint (never the name). */
function challengeTag(tokenName: string): string {
  return tokenFingerprint(tokenName).slice("sha256:".length);
}

/** Verifies a compact JWS over exactly the issued claims, signed by `key`. */
function verifySolution(jws: string, key: KeyObject, claims: ChallengeClaims, now: Date): void {
  const alg = keyAlgorithmOf(key) === "ed25519" ? "EdDSA" : "ES256";
  let payload: Record<string, unknown>;
  try {
    const signed = verifyCompactJws(jws, key, alg);
    if (!signed) throw new Error("not verified");
    payload = JSON.parse(Buffer.from(signed.buffer, signed.byteOffset, signed.byteLength).toString("utf8")) as Record<string, unknown>;
  } catch {
    throw accessDenied("The challenge response is not a valid signature by the bound key");
  }
  if (payload === null || typeof payload !== "object") throw accessDenied("The challenge response does not carry the challenge");
  const keys = Object.keys(claims) as (keyof ChallengeClaims)[];
  if (Object.keys(payload).length !== keys.length) throw accessDenied("The challenge response does not match the challenge");
  for (const k of keys) {
    const want = claims[k];
    const got = payload[k];
    const same = k === "nonce" ? typeof got === "string" && constantTimeEqual(got, want as string) : got === want;
    if (!same) throw accessDenied(`The challenge response does not match the challenge (claim "${k}")`);
  }
  const t = now.getTime() / 1000;
  if (t < claims.nbf || t >= claims.exp) throw expired("The challenge expired before it was answered: start the join again");
}

async function lockToken(ctx: AuthContext, token: TokenResource, why: string, caller: Caller): Promise<AppError> {
  const now = ctx.clock.now();
  const target: LockTarget = { kind: "token", name: token.metadata.name };
  const lock: LockRecord = { target, created_at: now.toISOString(), message: why, created_by: "machine-id-auth" };
  const fp = tokenFingerprint(token.metadata.name);
  const ev = [
    event(EVENT.tokenLocked, now, { token: fp, bot: token.spec.bot_name, reason: why, remote_addr: caller.remoteAddr }),
    event(EVENT.lockCreate, now, { target: auditTarget(target), message: why, user: "machine-id-auth" }),
    event(EVENT.joinFailed, now, { reason: why, join_method: "bound_keypair", token: fp, bot: token.spec.bot_name, remote_addr: caller.remoteAddr, error: "LOCKED" }),
  ];
  await ctx.backend.atomicWrite([{ key: KEYS.lock(target), condition: { kind: "whatever" }, action: { kind: "put", value: lock } }], ev);
  ctx.audit.logged(ev);
  return locked(`Join token "${token.metadata.name}" is now locked: ${why}. An admin must check the bot's hosts, then "ctl unlock token/${token.metadata.name}"`);
}

/**
 * Checks the join state the agent presented against the token's status: a reason to
 * lock the token, or the sequence to continue from. A state validates only for the
 * token, and the incarnation of it, that issued it: a sibling token of the same bot, or
 * an earlier token or bot of the same name, signed states too. A state this service
 * signed for this token and incarnation with a *newer* sequence than the stored one can
 * only mean the database went back in time (a restored backup): its bot_instance_id is
 * then one this token issued (the signature covers both), and the stored count catches
 * up, as renewal generations do, rather than locking a bot that did nothing wrong.
 */
async function checkJoinState(
  ctx: AuthContext,
  token: TokenResource,
  status: BoundKeypairStatus,
  presented: string | undefined,
): Promise<{ why: string } | { sequence: number; rollback: boolean }> {
  const stored = status.recovery_count ?? 0;
  if (!presented) return { why: "a join without the join state of the previous join: the keypair is in use on another host, or its state was lost" };
  let claims: JoinStateClaims;
  try {
    const r = await jwtVerify(presented, ctx.authorities.jwt.publicKey, {
      issuer: ctx.authorities.cluster,
      audience: ctx.authorities.cluster,
      subject: token.spec.bot_name,
      algorithms: ["EdDSA"],
    });
    claims = r.payload as unknown as JoinStateClaims;
  } catch {
    return { why: "a join state this cluster did not issue for this bot" };
  }
  if (typeof claims.recovery_sequence !== "number" || !Number.isInteger(claims.recovery_sequence)) {
    return { why: "a join state this cluster did not issue for this bot" };
  }
  const legacy = claims.token_name === undefined && claims.token_incarnation === undefined && status.incarnation === undefined;
  if (!legacy && (claims.token_name !== token.metadata.name || typeof status.incarnation !== "string" || claims.token_incarnation !== status.incarnation)) {
    return { why: "a join state issued for another token, or for an earlier token of this name" };
  }
  // A state from before states named their token (the token too predates incarnations):
  // it proves only the exact current state, never a rollback.
  if (claims.recovery_sequence > stored && !legacy) return { sequence: claims.recovery_sequence, rollback: true };
  if (claims.bot_instance_id !== status.bound_bot_instance_id || claims.recovery_sequence !== stored) {
    return { why: `a stale join state (sequence ${claims.recovery_sequence}, expected ${stored}): another host with a copy of the keypair joined since` };
  }
  return { sequence: stored, rollback: false };
}

/**
 * A refusal whose message (for the caller, who knows the token) names the join token:
 * the audit reason is that message with the name replaced by the token's fingerprint,
 * since audit events never hold a token's name (docs/threat-model.md). Should the name
 * still appear (a message that writes it unquoted), the reason falls back to the error's
 * machine-readable reason or code.
 */
function refuseNamingToken(e: AppError, tokenName: string): Refusal {
  const reason = e.message.split(`"${tokenName}"`).join(tokenFingerprint(tokenName));
  const fallback = typeof e.details?.reason === "string" ? e.details.reason : e.code.toLowerCase();
  return refuse(e, reason.includes(tokenName) ? fallback : reason);
}

/** Step 2: checks the signed challenge, applies the recovery rules and joins. */
async function solve(ctx: AuthContext, req: BoundKeypairSolveRequest, attempt: JoinAttempt): Promise<JoinResponse> {
  const parsed = begunKeys.get(req.challenge_id);
  begunKeys.delete(req.challenge_id);
  const item = await ctx.backend.get<StoredChallenge>(KEYS.challenge(req.challenge_id));
  if (!item) throw refuse(accessDenied("Unknown, expired or already used challenge: start the join again"), "unknown, expired or used challenge");
  const c = item.value;
  attempt.tokenName = c.token_name;
  const now = ctx.clock.now();
  try {
    verifySolution(req.solution, parsedKey(c.expected_key).key, c.claims, now);
  } catch (e) {
    // a challenge gets one answer: a wrong one burns it
    await ctx.backend.delete(item.key, item.revision).catch(() => {});
    if (e instanceof AppError) throw refuseNamingToken(e, c.token_name);
    throw e;
  }

  const { token, revision, status, bot } = await loadToken(ctx, c.token_name, attempt, c.bot_name);
  const bk = token.spec.bound_keypair!;
  const botName = token.spec.bot_name;
  let boundKey = c.expected_key;
  try {
    const current = status.bound_public_key ?? (c.registering ? c.expected_key : undefined);
    if (!current || !sameKey(current, c.expected_key)) throw accessDenied("The key bound to the token changed during this join: start the join again");
    // registering: the deadline holds at the moment the key is bound, not only when the challenge was asked for
    if (!status.bound_public_key) mustRegisterBefore(token, now);
    checkRecoveryLimit(token, status);
    if (c.rotate) {
      if (!req.new_public_key || !req.new_key_solution) {
        throw badParameter(`Join token "${token.metadata.name}" asks for key rotation (rotate_after): the agent must send a new key`);
      }
      const next = parsePublicKey(req.new_public_key, "new_public_key");
      if (keyId(next) === c.claims.sub) throw badParameter("The rotated key must differ from the current key");
      verifySolution(req.new_key_solution, next, c.claims, now);
      boundKey = keyText(next);
    }
  } catch (e) {
    if (e instanceof AppError) throw refuseNamingToken(e, token.metadata.name);
    throw e;
  }
  let count = status.recovery_count ?? 0;
  if (bk.recovery.mode !== "insecure" && status.bound_bot_instance_id) {
    const js = await checkJoinState(ctx, token, status, c.join_state);
    if ("why" in js) throw await lockToken(ctx, token, js.why, attempt.caller);
    if (js.rollback) {
      await ctx.audit.emit(EVENT.joinStateRollback, now, {
        token: tokenFingerprint(token.metadata.name),
        bot: botName,
        presented: js.sequence,
        stored: count,
        remote_addr: attempt.caller.remoteAddr,
      });
      count = js.sequence;
      // the limit applies to the joins that really happened, not to the restored count
      try {
        checkRecoveryLimit(token, { ...status, recovery_count: count });
      } catch (e) {
        if (e instanceof AppError) throw refuseNamingToken(e, token.metadata.name);
        throw e;
      }
    }
  }

  const sequence = count + 1;
  return startInstance(ctx, attempt, parsed ?? parseKeys(c.request), {
    bot,
    tokenName: token.metadata.name,
    boundPublicKey: boundKey,
    auditFields: { recovery_count: sequence, recovery_mode: bk.recovery.mode, ...(c.rotate ? { rotated: true } : {}) },
    // the token's new status and the used challenge, written with the new instance
    async complete(instance) {
      const instanceId = instance.instance_id;
      const { registration_secret: _used, ...rest } = status;
      const incarnation = status.incarnation ?? randomId(16); // a token from before incarnations gets one now
      const newStatus: BoundKeypairStatus = {
        ...rest,
        incarnation,
        bound_public_key: boundKey,
        bound_bot_instance_id: instanceId,
        recovery_count: sequence,
        last_recovered_at: now.toISOString(),
        ...(c.rotate ? { last_rotated_at: now.toISOString() } : {}),
      };
      const updated: TokenResource = { ...token, status: { bound_keypair: newStatus } };
      // the claims in the order jose's SignJWT wrote them, so the document is byte for byte the same
      const claims = {
        token_name: token.metadata.name,
        token_incarnation: incarnation,
        bot_instance_id: instanceId,
        recovery_sequence: sequence,
        recovery_limit: bk.recovery.limit,
        recovery_mode: bk.recovery.mode,
      } satisfies JoinStateClaims;
      const joinState = signCompactJws(
        { alg: "EdDSA", typ: "JWT" },
        JSON.stringify({ ...claims, iss: ctx.authorities.cluster, aud: ctx.authorities.cluster, sub: botName, iat: Math.floor(now.getTime() / 1000) }),
        ctx.authorities.jwt.privateKey,
      );
      return {
        ops: [
          { key: KEYS.token(token.metadata.name), condition: { kind: "revision", revision }, action: { kind: "put", value: updated } },
          { key: item.key, condition: { kind: "revision", revision: item.revision }, action: { kind: "delete" } },
        ],
        answer: { join_state: joinState },
      };
    },
    conflict: refuse(accessDenied("Another join with this token completed at the same time: start the join again"), "lost a race with a concurrent join"),
  });
}

/**
 * Unanswered challenges per address: each `begin` writes a row before anyone is
 * authenticated, so an address spends one allowance per challenge issued and gets it
 * back when one is answered. The default is a burst of 100 (a fleet behind one NAT
 * joining at once), then one a second; challenges expire after a minute, so an address
 * holds at most a few hundred rows however long it tries. Past it, `begin` answers 429
 * with Retry-After (the agent waits as asked), and the moment is audited once.
 */
function challengeLimit(ctx: AuthContext, limiter = new FailureLimiter({ clock: ctx.clock, burst: 100, refillMs: 1000 })): AddressLimit {
  return {
    wait(addr, path) {
      const ms = path === ROUTES.boundKeypairBegin ? limiter.retryAfterMs(addr) : 0;
      return ms > 0 ? { ms, what: "Too many unanswered bound keypair challenges from this address" } : undefined;
    },
    async answered(addr, path, status) {
      if (status !== 200) return;
      if (path === ROUTES.boundKeypairSolve) limiter.refund(addr);
      else if (path === ROUTES.boundKeypairBegin && limiter.recordFailure(addr)) {
        await ctx.audit.emit(EVENT.joinFailed, ctx.clock.now(), {
          reason: `rate limited: ${limiter.burst} unanswered bound keypair challenges from this address`,
          remote_addr: addr,
          error: "LIMIT_EXCEEDED",
          retry_after_seconds: Math.ceil(limiter.retryAfterMs(addr) / 1000),
        });
      }
    },
  };
}

/**
 * The `bound_keypair` join method: two requests of its own, each audited as a join is.
 * Begin answers with a challenge; solve checks the answer and ends in startInstance.
 */
export const boundKeypairJoin: JoinMethod = {
  name: "bound_keypair",
  addressLimit: challengeLimit,
  routes: [
    joinRoute({
      path: ROUTES.boundKeypairBegin,
      schema: BoundKeypairBeginRequest,
      what: "bound keypair join request",
      handle: (ctx, req, caller) => {
        const attempt: JoinAttempt = { method: "bound_keypair", caller, tokenName: req.token_name };
        return audited(ctx, attempt, () => begin(ctx, req, attempt));
      },
    }),
    joinRoute({
      path: ROUTES.boundKeypairSolve,
      schema: BoundKeypairSolveRequest,
      what: "bound keypair challenge response",
      handle: (ctx, req, caller) => {
        const attempt: JoinAttempt = { method: "bound_keypair", caller };
        return audited(ctx, attempt, () => solve(ctx, req, attempt));
      },
    }),
  ],
};
