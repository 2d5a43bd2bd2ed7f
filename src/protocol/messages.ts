/**
 * The request and response bodies of the auth service's HTTP API, as zod schemas
 * both sides decode with: the server never trusts a body it has not decoded, and
 * the client never trusts a response it has not decoded either.
 */

import * as z from "zod";
import { badParameter } from "../lib/errors.ts";
import { lazy } from "../lib/lazy.ts";
import { CI_JOIN_METHODS, JOIN_METHODS } from "../resources/index.ts";

/** Routes of the auth service. Paths under /webapi are public; /v1 needs a client certificate or a join secret. */
export const ROUTES = {
  ping: "/webapi/ping",
  exportCA: "/webapi/auth/export",
  installScript: "/scripts/install.sh",
  downloads: "/downloads/",
  join: "/v1/join",
  boundKeypairBegin: "/v1/join/bound-keypair/begin",
  boundKeypairSolve: "/v1/join/bound-keypair/solve",
  renew: "/v1/bot/renew",
  botCerts: "/v1/bot/certs",
  /** The Kubernetes clusters the calling bot's roles reach (a kubernetes/v2 output resolves its selectors against them). */
  botKubernetesClusters: "/v1/bot/kubernetes-clusters",
  status: "/v1/status",
  resources: "/v1/resources",
  bots: "/v1/bots",
  tokens: "/v1/tokens",
  botInstances: "/v1/bot-instances",
  locks: "/v1/locks",
  events: "/v1/events",
  signHost: "/v1/auth/sign-host",
  /** Prefix of the Kubernetes proxy: `/v1/kubernetes/<cluster>/api/v1/…` reaches that cluster's API. */
  kubernetes: "/v1/kubernetes/",
} as const;

/**
 * The path a kubeconfig's `server:` URL ends with to reach Kubernetes cluster
 * `cluster` through the auth service (kubectl keeps a path in `server:` and appends
 * the API path to it).
 */
export function kubernetesProxyPath(cluster: string): string {
  return `${ROUTES.kubernetes}${encodeURIComponent(cluster)}`;
}

/** Largest request body the service reads; anything bigger is refused before parsing. */
export const MAX_BODY_BYTES = 256 * 1024;

export const CA_EXPORT_TYPES = ["tls-host", "tls-user", "ssh-host", "ssh-user"] as const;
export type CAExportType = (typeof CA_EXPORT_TYPES)[number];

const pem = lazy(() => z.string().min(1).max(16 * 1024));
const sshLine = lazy(() => z.string().min(1).max(16 * 1024));

export const PingResponse = lazy(() => z.object({
  cluster_name: z.string(),
  server_version: z.string(),
  ca_pins: z.array(z.string()),
  join_methods: z.array(z.string()),
  public_addr: z.string().optional(),
  /** Names of the Kubernetes clusters the service proxies (absent when none). */
  kubernetes_clusters: z.array(z.string()).optional(),
}));
export type PingResponse = z.infer<typeof PingResponse>;

/** The public keys an agent wants certified, and for how long. */
export const KeyRequest = lazy(() => z.object({
  public_tls_key: pem,
  public_ssh_key: sshLine,
  ttl_seconds: z.number().int().positive().max(366 * 86400).optional(),
}));
export type KeyRequest = z.infer<typeof KeyRequest>;

/** A set of certificates and the CA material needed to use and check them. */
export const Certs = lazy(() => z.object({
  tls_cert: pem,
  ssh_cert: sshLine,
  /** User CA first (it signed tls_cert), then the host CA (it signed the service's TLS certificate). */
  tls_ca_certs: z.array(pem),
  ssh_user_ca_keys: z.array(sshLine),
  ssh_host_ca_keys: z.array(sshLine),
  cluster_name: z.string(),
  valid_after: z.string(),
  valid_before: z.string(),
}));
export type Certs = z.infer<typeof Certs>;

export const JoinRequest = lazy(() => KeyRequest.extend({
  join_method: z.enum(["token", "kubernetes", ...CI_JOIN_METHODS]),
  token_name: z.string().min(1).max(1024),
  /** The Kubernetes service-account JWT, or the CI platform's OIDC ID token (github, gitlab, circleci). */
  id_token: z.string().max(64 * 1024).optional(),
}));
export type JoinRequest = z.infer<typeof JoinRequest>;

export const JoinResponse = lazy(() => z.object({
  bot_name: z.string(),
  bot_instance_id: z.string(),
  certs: Certs,
  /** A signed join-state document (bound keypair); the agent stores it and presents it on its next join. */
  join_state: z.string().optional(),
}));
export type JoinResponse = z.infer<typeof JoinResponse>;

/** The claims of a bound-keypair challenge; the agent signs exactly these as a compact JWS. */
export const ChallengeClaims = lazy(() => z.object({
  iss: z.string(),
  aud: z.string(),
  /** keyId (base64url SHA-256 of the SPKI DER) of the key that must sign. */
  sub: z.string(),
  nbf: z.number().int(),
  iat: z.number().int(),
  exp: z.number().int(),
  nonce: z.string(),
}));
export type ChallengeClaims = z.infer<typeof ChallengeClaims>;

export const BoundKeypairBeginRequest = lazy(() => KeyRequest.extend({
  token_name: z.string().min(1).max(1024),
  /** The bound public key the agent holds (authorized_keys line or SPKI PEM). */
  public_key: z.string().min(1).max(16 * 1024).optional(),
  /** With registration-secret onboarding: the one-time secret. */
  registration_secret: z.string().min(1).max(1024).optional(),
  /** The join-state document returned by the previous join, if any. */
  join_state: z.string().min(1).max(16 * 1024).optional(),
}));
export type BoundKeypairBeginRequest = z.infer<typeof BoundKeypairBeginRequest>;

export const BoundKeypairBeginResponse = lazy(() => z.object({
  challenge_id: z.string(),
  challenge: ChallengeClaims,
  /** The token asks for a new key: sign the challenge with the new key too (new_key_solution). */
  rotate: z.boolean(),
  /** The token's recovery mode, so an agent with a static key can say why it cannot join. */
  recovery_mode: z.enum(["standard", "relaxed", "insecure"]),
}));
export type BoundKeypairBeginResponse = z.infer<typeof BoundKeypairBeginResponse>;

export const BoundKeypairSolveRequest = lazy(() => z.object({
  challenge_id: z.string().min(1).max(256),
  /** The challenge claims as a compact JWS signed with the bound key (EdDSA or ES256). */
  solution: z.string().min(1).max(16 * 1024),
  /** When rotating: the new public key, and the same claims signed with it. */
  new_public_key: z.string().min(1).max(16 * 1024).optional(),
  new_key_solution: z.string().min(1).max(16 * 1024).optional(),
}));
export type BoundKeypairSolveRequest = z.infer<typeof BoundKeypairSolveRequest>;

export const RenewRequest = KeyRequest;
export type RenewRequest = KeyRequest;

export const RenewResponse = lazy(() => z.object({ certs: Certs, generation: z.number().int() }));
export type RenewResponse = z.infer<typeof RenewResponse>;

/**
 * Response header of a renewal: present (value {@link CONNECTION_RENEWED}) when the
 * service moved the connection that carried the renewal to the renewed identity, so
 * the client may send its next requests — the next renewal included — on that same
 * connection. Without it the connection still speaks for the certificate of its
 * handshake, which the renewal superseded: the client must open a new connection with
 * the new certificate (presenting the old one again would lock the instance).
 */
export const CONNECTION_IDENTITY_HEADER = "machine-id-connection-identity";
export const CONNECTION_RENEWED = "renewed";

export const BotCertsRequest = lazy(() => KeyRequest.extend({
  /** A subset of the bot's roles; all of them when absent. */
  roles: z.array(z.string()).optional(),
  kubernetes_cluster: z.string().optional(),
  /** A kubernetes/v2 output: one certificate for all of these clusters (not with kubernetes_cluster). */
  kubernetes_clusters: z.array(z.string()).max(1024).optional(),
}));
export type BotCertsRequest = z.infer<typeof BotCertsRequest>;

export const BotCertsResponse = lazy(() => z.object({ certs: Certs, kubernetes: z.object({ server: z.string(), cluster: z.string() }).optional() }));
export type BotCertsResponse = z.infer<typeof BotCertsResponse>;

/** One Kubernetes cluster the auth service proxies, as a bot sees it. */
export const KubernetesClusterInfo = lazy(() => z.object({ name: z.string(), labels: z.record(z.string(), z.string()) }));
export type KubernetesClusterInfo = z.infer<typeof KubernetesClusterInfo>;

/** The clusters the calling bot's roles reach, sorted by name. */
export const KubernetesClustersResponse = lazy(() => z.object({ clusters: z.array(KubernetesClusterInfo) }));
export type KubernetesClustersResponse = z.infer<typeof KubernetesClustersResponse>;

export const StatusResponse = lazy(() => z.object({
  cluster_name: z.string(),
  server_version: z.string(),
  ca_pin: z.string(),
  public_addr: z.string().optional(),
  counts: z.record(z.string(), z.number()),
}));
export type StatusResponse = z.infer<typeof StatusResponse>;

export const AddBotRequest = lazy(() => z.object({
  name: z.string().min(1),
  roles: z.array(z.string()).default([]),
  logins: z.array(z.string()).optional(),
  ttl_seconds: z.number().int().positive().optional(),
  join_method: z.enum(JOIN_METHODS).optional(),
  initial_public_key: z.string().optional(),
  registration_secret: z.string().optional(),
  recovery_mode: z.enum(["standard", "relaxed", "insecure"]).optional(),
  recovery_limit: z.number().int().min(0).optional(),
}));
export type AddBotRequest = z.infer<typeof AddBotRequest>;

export const AddBotResponse = lazy(() => z.object({
  bot: z.string(),
  token: z.string(),
  join_method: z.string(),
  ca_pins: z.array(z.string()),
  expires: z.string().optional(),
  registration_secret: z.string().optional(),
}));
export type AddBotResponse = z.infer<typeof AddBotResponse>;

export const AddTokenRequest = lazy(() => z.object({
  bot_name: z.string().min(1),
  join_method: z.enum(JOIN_METHODS).default("token"),
  ttl_seconds: z.number().int().positive().optional(),
  name: z.string().optional(),
}));
export type AddTokenRequest = z.infer<typeof AddTokenRequest>;

export const BotInstance = lazy(() => z.object({
  bot_name: z.string(),
  instance_id: z.string(),
  created_at: z.string(),
  join_method: z.string(),
  token_name: z.string().optional(),
  generation: z.number().int(),
  last_renewed_at: z.string().optional(),
  expires_at: z.string().optional(),
  locked: z.boolean(),
  remote_addr: z.string().optional(),
}));
export type BotInstance = z.infer<typeof BotInstance>;

export const LockRequest = lazy(() => z.object({
  bot_instance_id: z.string().optional(),
  bot: z.string().optional(),
  token: z.string().optional(),
  message: z.string().max(1024).optional(),
  ttl_seconds: z.number().int().positive().optional(),
}));
export type LockRequest = z.infer<typeof LockRequest>;

export const Lock = lazy(() => z.object({
  name: z.string(),
  target: z.object({ bot_instance_id: z.string().optional(), bot: z.string().optional(), token: z.string().optional() }),
  message: z.string().optional(),
  created_at: z.string(),
  expires: z.string().optional(),
}));
export type Lock = z.infer<typeof Lock>;

/** Certify an SSH host key with the host CA, so agents' known_hosts (@cert-authority) trust the host. */
export const SignHostRequest = lazy(() => z.object({
  public_key: sshLine,
  principals: z.array(z.string().min(1).max(255)).min(1).max(64),
  ttl_seconds: z.number().int().positive().max(366 * 86400).optional(),
}));
export type SignHostRequest = z.infer<typeof SignHostRequest>;

export const SignHostResponse = lazy(() => z.object({ certificate: sshLine, valid_before: z.string() }));
export type SignHostResponse = z.infer<typeof SignHostResponse>;

export const AuditEvent = lazy(() => z.object({
  id: z.number().int(),
  type: z.string(),
  time: z.string(),
  fields: z.record(z.string(), z.unknown()),
}));
export type AuditEvent = z.infer<typeof AuditEvent>;

/** Decodes `value` with `schema`; a mismatch is BAD_PARAMETER naming the first bad field. */
export function decode<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map(String).join(".");
  throw badParameter(`Invalid ${what}: ${path ? `field "${path}": ` : ""}${issue.message}`, path ? { field: path } : {});
}
