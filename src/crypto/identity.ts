/**
 * The machine-id identity a client certificate carries: JSON in a DER UTF8String inside
 * a non-critical X.509 extension. Decoding validates the shape, since certificates
 * arrive from the network.
 */

import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { badParameter } from "../lib/errors.ts";
import { DerReader, encode, utf8String } from "./_der.ts";

/** OID of the identity extension (a private arc; the extension is never critical). */
export const IDENTITY_OID = "1.3.9999.77.1";

/** Who a client certificate speaks for; trusted only after the chain is verified. */
export interface CertIdentity {
  cluster: string;
  username: string;
  kind: "bot" | "admin";
  botName?: string;
  botInstanceId?: string;
  /** Renewal counter of a bot instance; increases by one with each renewal. */
  generation?: number;
  renewable: boolean;
  roles: string[];
  logins: string[];
  kubernetesUsers?: string[];
  kubernetesGroups?: string[];
  kubernetesCluster?: string;
  /** A `kubernetes/v2` output's certificate: every cluster it may reach through the proxy (instead of `kubernetesCluster`). */
  kubernetesClusters?: string[];
  joinMethod?: string;
  tokenName?: string;
}

/** Caps what a hostile certificate can make the decoder chew on. */
const MAX_IDENTITY_BYTES = 64 * 1024;

const name = lazy(() => z.string().min(1).max(1024));
const names = lazy(() => z.array(z.string().max(1024)).max(1024));

/**
 * The shape a certificate identity must have (exported for the tests that hold the
 * written-out check to it). Unknown fields are dropped rather than refused so an older
 * reader accepts a newer writer.
 */
export const IdentitySchema = lazy(() => z.object({
  cluster: name,
  username: name,
  kind: z.enum(["bot", "admin"]),
  botName: name.optional(),
  botInstanceId: name.optional(),
  generation: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  renewable: z.boolean(),
  roles: names,
  logins: names,
  kubernetesUsers: names.optional(),
  kubernetesGroups: names.optional(),
  kubernetesCluster: name.optional(),
  kubernetesClusters: names.optional(),
  joinMethod: name.optional(),
  tokenName: name.optional(),
}));

/** Field order of the encoded JSON, so equal identities encode to equal bytes (read on first use: it builds the schema). */
const FIELD_ORDER = lazy(() => Object.keys(IdentitySchema.shape) as (keyof CertIdentity)[]);

const NAME_FIELDS = new Set<string>(["cluster", "username", "botName", "botInstanceId", "kubernetesCluster", "joinMethod", "tokenName"]);
const OPTIONAL_FIELDS = new Set<string>(["botName", "botInstanceId", "generation", "kubernetesUsers", "kubernetesGroups", "kubernetesCluster", "kubernetesClusters", "joinMethod", "tokenName"]);
const isName = (v: unknown) => typeof v === "string" && v.length >= 1 && v.length <= 1024;
function isNames(v: unknown): v is string[] {
  if (!Array.isArray(v) || v.length > 1024) return false;
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== "string" || (v[i] as string).length > 1024) return false;
  return true;
}

/**
 * The schema's checks written out for the valid case, in field order: every issuance
 * and verification validates an identity, and zod's general machinery was a tenth of
 * an issuance. It accepts only what IdentitySchema accepts (anything it is unsure of
 * goes to zod, which also words the refusal) and returns what zod would.
 */
function validFast(value: unknown): CertIdentity | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) {
    const x = v[k];
    if (x === undefined) {
      if (OPTIONAL_FIELDS.has(k)) continue;
      return undefined;
    }
    if (NAME_FIELDS.has(k)) {
      if (!isName(x)) return undefined;
      out[k] = x;
    } else if (k === "kind") {
      if (x !== "bot" && x !== "admin") return undefined;
      out[k] = x;
    } else if (k === "renewable") {
      if (typeof x !== "boolean") return undefined;
      out[k] = x;
    } else if (k === "generation") {
      if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) return undefined;
      out[k] = x;
    } else {
      if (!isNames(x)) return undefined;
      out[k] = x.slice();
    }
  }
  return out as unknown as CertIdentity;
}

function validate(value: unknown, context: string): CertIdentity {
  const fast = validFast(value);
  if (fast) return fast;
  const result = IdentitySchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.length ? issue.path.join(".") : "value";
    throw badParameter(`Invalid certificate identity ${context}: ${path}: ${issue.message}`);
  }
  const out: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) if (result.data[k] !== undefined) out[k] = result.data[k];
  return out as unknown as CertIdentity;
}

/** The extension value (DER UTF8String of JSON) for `identity`, which is validated first. */
export function encodeIdentity(identity: CertIdentity): Uint8Array {
  const json = JSON.stringify(validate(identity, "to encode"));
  if (json.length > MAX_IDENTITY_BYTES) throw badParameter(`Invalid certificate identity to encode: it exceeds ${MAX_IDENTITY_BYTES} bytes`);
  return encode(utf8String(json));
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes and validates an identity extension value; any defect is a BAD_PARAMETER. */
export function decodeIdentity(value: Uint8Array): CertIdentity {
  if (value.length > MAX_IDENTITY_BYTES) throw badParameter(`Invalid certificate identity: it exceeds ${MAX_IDENTITY_BYTES} bytes`);
  const r = new DerReader(value, "certificate identity");
  const el = r.next(0x0c, "identity");
  r.end("the identity");
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(el.value));
  } catch {
    throw badParameter("Invalid certificate identity: it is not UTF-8 JSON");
  }
  return validate(parsed, "in certificate");
}
