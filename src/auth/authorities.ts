/**
 * The cluster's certificate authorities: created once on first start, kept in
 * storage, loaded into memory to sign. Their private keys never leave this
 * process except into the storage backend (a 0600 file in a 0700 directory).
 */

import type { KeyObject } from "node:crypto";
import { hostname } from "node:os";
import {
  caPin,
  createCA,
  formatSshPublicKey,
  generateKeyPair,
  issueCertificate,
  knownHostsCertAuthorityLine,
  parsePrivateKey,
  privateKeyToPem,
  type KeyPair,
} from "../crypto/index.ts";
import { AUTH_SERVER_NAME } from "../protocol/index.ts";
import { splitHostPort, type CaKeyAlgorithm } from "../config/index.ts";
import { AppError, isAppError } from "../lib/errors.ts";
import type { Backend } from "./storage/index.ts";

/** What storage holds for one authority (PEM and OpenSSH text only). */
interface StoredAuthority {
  type: "user" | "host" | "jwt";
  cluster: string;
  created_at: string;
  tls?: { cert: string; key: string };
  ssh?: { public: string; key: string };
  jwt?: { key: string };
}

/** One loaded authority: certificates and keys ready to sign. */
export interface Authority {
  type: "user" | "host";
  tlsCertPem: string;
  tlsKey: KeyObject;
  sshKey: KeyPair;
  /** OpenSSH public key line of the SSH CA. */
  sshPublicLine: string;
}

/** All authorities of a cluster. */
export interface Authorities {
  cluster: string;
  user: Authority;
  host: Authority;
  jwt: KeyPair;
  /** `sha256:…` pin of the host TLS CA, which signs the service's own certificate. */
  caPin: string;
}

const CA_VALIDITY_MS = 10 * 365 * 86_400_000;

async function createStored(type: "user" | "host", cluster: string, now: Date, tlsAlgorithm: CaKeyAlgorithm): Promise<StoredAuthority> {
  const tlsKey = generateKeyPair(tlsAlgorithm);
  const sshKey = generateKeyPair("ed25519");
  const cert = await createCA({
    commonName: `${cluster} ${type} CA`,
    organization: cluster,
    keyPair: tlsKey,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
  });
  return {
    type,
    cluster,
    created_at: now.toISOString(),
    tls: { cert, key: privateKeyToPem(tlsKey.privateKey) },
    ssh: { public: formatSshPublicKey(sshKey.publicKey, `${cluster} ${type} CA`), key: privateKeyToPem(sshKey.privateKey) },
  };
}

function load(s: StoredAuthority): Authority {
  if (!s.tls || !s.ssh || (s.type !== "user" && s.type !== "host")) {
    throw new Error(`stored authority "${s.type}" is incomplete`);
  }
  return {
    type: s.type,
    tlsCertPem: s.tls.cert,
    tlsKey: parsePrivateKey(s.tls.key, `${s.type} CA key`).privateKey,
    sshKey: parsePrivateKey(s.ssh.key, `${s.type} SSH CA key`),
    sshPublicLine: s.ssh.public,
  };
}

async function loadOrCreate<T>(backend: Backend, key: string, create: () => Promise<T>): Promise<T> {
  const existing = await backend.get<T>(key);
  if (existing) return existing.value;
  const value = await create();
  try {
    await backend.create(key, value);
    return value;
  } catch (e) {
    // another auth process sharing this backend won the race: use its CA
    if (isAppError(e, "ALREADY_EXISTS")) return (await backend.get<T>(key))!.value;
    throw e;
  }
}

/**
 * Loads the cluster's authorities, creating them on first start. A backend that
 * already belongs to another cluster name is refused: its CAs would not match.
 * `caKeyAlgorithm` is the X.509 CAs' key type when they are created; existing CAs keep
 * theirs (the SSH CAs are always Ed25519).
 */
export async function loadAuthorities(backend: Backend, cluster: string, now = new Date(), caKeyAlgorithm: CaKeyAlgorithm = "ecdsa-p256"): Promise<Authorities> {
  const user = await loadOrCreate(backend, "/authorities/user", () => createStored("user", cluster, now, caKeyAlgorithm));
  const host = await loadOrCreate(backend, "/authorities/host", () => createStored("host", cluster, now, caKeyAlgorithm));
  const jwt = await loadOrCreate<StoredAuthority>(backend, "/authorities/jwt", () => createJwt(cluster, now));
  return fromStored(cluster, user, host, jwt);
}

/** Authorities loaded, or created in memory only, and a way to store the created ones. */
export interface PreparedAuthorities {
  authorities: Authorities;
  /** Whether some authority is new (a first start): `persist()` stores it. */
  created: boolean;
  /**
   * Stores the authorities created in memory, each only if still absent. When another
   * auth service sharing the backend stored its own meanwhile, ALREADY_EXISTS: the
   * ones in memory must not be used.
   */
  persist(): Promise<void>;
}

/**
 * Like `loadAuthorities`, but what is missing is created in memory and written only by
 * `persist()`: a first start that fails before it serves (its port is taken, say)
 * leaves no CA behind, so nothing pins the data directory to its cluster name.
 */
export async function prepareAuthorities(backend: Backend, cluster: string, now = new Date(), caKeyAlgorithm: CaKeyAlgorithm = "ecdsa-p256"): Promise<PreparedAuthorities> {
  const created: [string, StoredAuthority][] = [];
  const loadOrPrepare = async (key: string, create: () => Promise<StoredAuthority>) => {
    const existing = await backend.get<StoredAuthority>(key);
    if (existing) return existing.value;
    const value = await create();
    created.push([key, value]);
    return value;
  };
  const user = await loadOrPrepare("/authorities/user", () => createStored("user", cluster, now, caKeyAlgorithm));
  const host = await loadOrPrepare("/authorities/host", () => createStored("host", cluster, now, caKeyAlgorithm));
  const jwt = await loadOrPrepare("/authorities/jwt", () => createJwt(cluster, now));
  return {
    authorities: fromStored(cluster, user, host, jwt),
    created: created.length > 0,
    async persist() {
      for (const [key, value] of created) {
        try {
          await backend.create(key, value);
        } catch (e) {
          if (!isAppError(e, "ALREADY_EXISTS")) throw e;
          throw new AppError("ALREADY_EXISTS", `Another auth service sharing this storage created the cluster's authorities at the same time: start this one again to use them`, { cause: e });
        }
      }
      created.length = 0;
    },
  };
}

async function createJwt(cluster: string, now: Date): Promise<StoredAuthority> {
  const k = generateKeyPair("ed25519");
  return { type: "jwt", cluster, created_at: now.toISOString(), jwt: { key: privateKeyToPem(k.privateKey) } };
}

function fromStored(cluster: string, user: StoredAuthority, host: StoredAuthority, jwt: StoredAuthority): Authorities {
  if (user.cluster !== cluster) {
    throw new Error(
      `The data directory belongs to cluster "${user.cluster}", not "${cluster}": start with --cluster-name "${user.cluster}" or use another data directory`,
    );
  }
  const hostAuth = load(host);
  return {
    cluster,
    user: load(user),
    host: hostAuth,
    jwt: parsePrivateKey(jwt.jwt!.key, "JWT signing key"),
    caPin: caPin(hostAuth.tlsCertPem),
  };
}

/** The cluster name stored in an existing backend, if any (so restarts need not repeat the flag). */
export async function storedClusterName(backend: Backend): Promise<string | undefined> {
  return (await backend.get<StoredAuthority>("/authorities/user"))?.value.cluster;
}

/** Host names and addresses the service's TLS certificate is valid for. */
export function serverNames(listenAddr: string, publicAddr?: string): { dns: string[]; ips: string[] } {
  const dns = new Set<string>([AUTH_SERVER_NAME, "localhost"]);
  const ips = new Set<string>(["127.0.0.1", "::1"]);
  const add = (addr: string | undefined) => {
    if (!addr) return;
    const host = hostPort(addr)?.host;
    if (!host || host === "0.0.0.0" || host === "::") return;
    if (/^[\d.]+$/.test(host) || host.includes(":")) ips.add(host);
    else dns.add(host);
  };
  add(listenAddr);
  add(publicAddr);
  try {
    dns.add(hostname());
  } catch {
    // no host name: the fixed names still work
  }
  return { dns: [...dns], ips: [...ips] };
}

/** `host:port` split, the host without IPv6 brackets (as sockets want it); undefined when it is not that shape. */
export function hostPort(addr: string): { host: string; port: number } | undefined {
  const hp = splitHostPort(addr);
  return hp && { host: hp.host.replace(/^\[(.*)\]$/, "$1"), port: hp.port };
}

/** Issues the service's own TLS certificate from the host CA. */
export async function issueServerCertificate(
  auth: Authorities,
  names: { dns: string[]; ips: string[] },
  now: Date,
  ttlMs: number,
): Promise<{ certPem: string; keyPem: string }> {
  const kp = generateKeyPair("ecdsa-p256");
  const certPem = await issueCertificate({
    caCertPem: auth.host.tlsCertPem,
    caKey: auth.host.tlsKey,
    publicKey: kp.publicKey,
    commonName: AUTH_SERVER_NAME,
    organization: [auth.cluster],
    dnsNames: names.dns,
    ipAddresses: names.ips,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + ttlMs),
    usage: "server",
  });
  return { certPem, keyPem: privateKeyToPem(kp.privateKey) };
}

/** Public CA material in the forms `auth export` and outputs use. */
export function exportAuthority(auth: Authorities, type: "tls-host" | "tls-user" | "ssh-host" | "ssh-user"): string {
  switch (type) {
    case "tls-host":
      return auth.host.tlsCertPem;
    case "tls-user":
      return auth.user.tlsCertPem;
    case "ssh-user":
      // a TrustedUserCAKeys line
      return auth.user.sshPublicLine.trim() + "\n";
    case "ssh-host":
      // a known_hosts line
      return knownHostsCertAuthorityLine(auth.host.sshKey.publicKey, "*", `type=host cluster=${auth.cluster}`) + "\n";
  }
}
