/**
 * The bot's own renewable identity as the agent holds it: its private key, the
 * certificates the auth service issued for it and the CA material to talk back,
 * with what the certificate says (bot, instance, generation, expiry) decoded once.
 */

import * as z from "zod";
import { lazy } from "../../lib/lazy.ts";
import { parseCertificate, parsePrivateKey, formatSshPublicKey, publicKeyToPem, keyId, type KeyPair } from "../../crypto/index.ts";
import { badParameter } from "../../lib/errors.ts";
import type { Certs, ClientTLS } from "../../protocol/index.ts";

/** A renewable identity ready to use. */
export interface BotIdentity {
  keyPem: string;
  certs: Certs;
  botName: string;
  instanceId: string;
  generation: number;
  validBefore: Date;
  /** The auth service address the identity was obtained from. */
  authServer: string;
  joinMethod: string;
  /** `tokenFingerprint` of the join token this instance was created with, to notice a new token in the config. */
  tokenFingerprint?: string;
}

/** What storage holds: one JSON document, written atomically, so key and certificates always match. */
const StoredIdentity = lazy(() => z.object({
  version: z.literal(1),
  key_pem: z.string(),
  certs: z.object({
    tls_cert: z.string(),
    ssh_cert: z.string(),
    tls_ca_certs: z.array(z.string()),
    ssh_user_ca_keys: z.array(z.string()),
    ssh_host_ca_keys: z.array(z.string()),
    cluster_name: z.string(),
    valid_after: z.string(),
    valid_before: z.string(),
  }),
  auth_server: z.string(),
  join_method: z.string(),
  token_fingerprint: z.string().optional(),
}));

/** Builds a BotIdentity from freshly issued certificates; the certificate must carry a bot identity. */
export function makeIdentity(
  keyPem: string,
  certs: Certs,
  meta: { authServer: string; joinMethod: string; tokenFingerprint?: string },
): BotIdentity {
  const cert = parseCertificate(certs.tls_cert);
  const id = cert.identity;
  if (!id || id.kind !== "bot" || !id.botName || !id.botInstanceId || id.generation === undefined) {
    throw badParameter("The auth service returned a certificate without a bot identity");
  }
  const key = parsePrivateKey(keyPem, "bot identity key");
  if (keyId(key.publicKey) !== keyId(cert.publicKey)) {
    throw badParameter("The auth service returned a certificate for another key than the one the agent sent");
  }
  return {
    keyPem,
    certs,
    botName: id.botName,
    instanceId: id.botInstanceId,
    generation: id.generation,
    validBefore: cert.notAfter,
    authServer: meta.authServer,
    joinMethod: meta.joinMethod,
    ...(meta.tokenFingerprint ? { tokenFingerprint: meta.tokenFingerprint } : {}),
  };
}

/** Serialises an identity for storage. */
export function encodeIdentity(id: BotIdentity): string {
  const doc: z.infer<typeof StoredIdentity> = {
    version: 1,
    key_pem: id.keyPem,
    certs: id.certs,
    auth_server: id.authServer,
    join_method: id.joinMethod,
    ...(id.tokenFingerprint ? { token_fingerprint: id.tokenFingerprint } : {}),
  };
  return JSON.stringify(doc, null, 2) + "\n";
}

/** Reads an identity back from storage; BAD_PARAMETER naming `where` when it is damaged. */
export function decodeIdentity(text: string, where: string): BotIdentity {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw badParameter(`Cannot read the bot identity in ${where}: it is not JSON`);
  }
  const r = StoredIdentity.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw badParameter(`Cannot read the bot identity in ${where}: field "${issue.path.join(".")}": ${issue.message}`);
  }
  const d = r.data;
  try {
    return makeIdentity(d.key_pem, d.certs, {
      authServer: d.auth_server,
      joinMethod: d.join_method,
      ...(d.token_fingerprint ? { tokenFingerprint: currentFingerprint(d.token_fingerprint) } : {}),
    });
  } catch (e) {
    throw badParameter(`Cannot read the bot identity in ${where}: ${(e as Error).message}`, { cause: e });
  }
}

/** The mTLS material for talking to the auth service as this identity. */
export function identityTLS(id: BotIdentity): ClientTLS {
  return { caCertsPem: id.certs.tls_ca_certs, certPem: id.certs.tls_cert, keyPem: id.keyPem };
}

/** The two public keys a join, renew or certificate request carries, from one key pair. */
export function publicKeys(key: KeyPair): { public_tls_key: string; public_ssh_key: string } {
  return { public_tls_key: publicKeyToPem(key.publicKey), public_ssh_key: formatSshPublicKey(key.publicKey) };
}

/**
 * Identities written before the agent and the auth service shared one `tokenFingerprint`
 * hold the full SHA-256 in hex: the current form is its first 16 hex digits, prefixed.
 */
function currentFingerprint(stored: string): string {
  return /^[0-9a-f]{64}$/.test(stored) ? `sha256:${stored.slice(0, 16)}` : stored;
}
