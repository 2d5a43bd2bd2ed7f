/**
 * Renders the install script the auth service serves at /scripts/install.sh: the
 * repository's install.sh with this cluster's address, CA certificate, CA pin and the
 * agent units filled in, so the config it writes pins the cluster without the user typing it.
 */

import { X509Certificate, createHash } from "node:crypto";
import { badParameter } from "../../lib/errors.ts";
import { pemDecodeAll, pemEncode } from "../../lib/pem.ts";
// Embedded in the executable at build time; the files are the single source of truth.
import template from "../../../install.sh" with { type: "text" };
import agentUnit from "../../../systemd/machine-id.service" with { type: "text" };
import templateUnit from "../../../systemd/machine-id@.service" with { type: "text" };

/** SHA-256 (64 lowercase hex digits) of each architecture's binary, by arch ("x64", "arm64"). */
export type BuildChecksums = Readonly<Partial<Record<"x64" | "arm64", string>>>;

/** How the script's downloads verify the server: the embedded CA, or the system's trust store. */
export type DownloadTrust = "embedded-ca" | "system";

export interface InstallScriptOptions {
  /** host:port the agent dials and the script downloads from, e.g. "auth.example.com:3025". */
  publicAddr: string;
  /** `sha256:<hex>` of the host CA certificate's SubjectPublicKeyInfo. */
  caPin: string;
  /** The host CA certificate (PEM) the auth service's TLS certificate chains to. */
  caCertPem: string;
  /** Version of the binaries served, shown by the script. */
  version: string;
  /** Join method written to the config when the user passes none; default bound_keypair. */
  defaultJoinMethod?: string;
  /**
   * "embedded-ca" (default): downloads trust only the embedded CA. "system": the auth
   * service presents a publicly trusted certificate, so downloads use the system store.
   */
  downloadTrust?: DownloadTrust;
  /**
   * The checksums the downloads must match, as the service read them at start
   * (`loadBuildChecksums`); an arch without one is refused by the script.
   */
  checksums?: BuildChecksums;
}

const BEGIN = "# BEGIN SERVED VALUES";
const END = "# END SERVED VALUES";

/**
 * The install script for this cluster. Every value is validated and single-quoted, so
 * nothing from the options can run as shell code. Throws BAD_PARAMETER for a malformed
 * value or a pin that does not match the certificate.
 */
export function renderInstallScript(options: InstallScriptOptions): string {
  const values: Record<string, string> = {
    AUTH_SERVER: checkAddr(options.publicAddr),
    CA_PIN: checkPin(options.caPin),
    CA_PEM: checkCa(options.caCertPem, options.caPin),
    SERVER_VERSION: check(options.version, /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/, "version"),
    DEFAULT_JOIN_METHOD: check(options.defaultJoinMethod ?? "bound_keypair", /^[a-z][a-z0-9_]{0,31}$/, "join method"),
    DOWNLOAD_TRUST: check(options.downloadTrust ?? "embedded-ca", /^(embedded-ca|system)$/, "download trust"),
    SHA256_X64: checkSum(options.checksums?.x64, "x64"),
    SHA256_ARM64: checkSum(options.checksums?.arm64, "arm64"),
    AGENT_UNIT: agentUnit,
    TEMPLATE_UNIT: templateUnit,
  };
  const lines = template.split("\n");
  const begin = lines.findIndex((l) => l.startsWith(BEGIN));
  const end = lines.findIndex((l) => l.startsWith(END));
  if (begin < 0 || end < begin) throw new Error("install.sh has no served-values block");
  const block = lines.slice(begin + 1, end).map((line) => {
    const name = /^([A-Z][A-Z0-9_]*)=/.exec(line)?.[1];
    if (name === undefined || !(name in values)) return line;
    const assignment = `${name}=${shellQuote(values[name]!)}`;
    // The units hold `$MAINPID` for systemd, not for the shell; tell shellcheck so.
    return values[name]!.includes("$") ? `# shellcheck disable=SC2016\n${assignment}` : assignment;
  });
  const header = `${BEGIN}: filled in by the auth service at ${values.AUTH_SERVER}.`;
  return [...lines.slice(0, begin), header, ...block, ...lines.slice(end)].join("\n");
}

/** Single-quotes a value for bash: inside '…' nothing is special but the quote itself. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The CA pin of a PEM certificate: `sha256:` + hex SHA-256 of its DER SubjectPublicKeyInfo. */
export function caPinOf(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return `sha256:${createHash("sha256").update(spki).digest("hex")}`;
}

function check(value: string, re: RegExp, what: string): string {
  if (!re.test(value)) throw badParameter(`Invalid ${what} "${value}" for the install script`);
  return value;
}

function checkSum(sum: string | undefined, arch: string): string {
  return sum === undefined ? "" : check(sum, /^[0-9a-f]{64}$/, `SHA-256 of machine-id-linux-${arch}`);
}

function checkAddr(addr: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::(\d{1,5}))?$/.exec(addr);
  const port = m?.[2] === undefined ? 443 : Number(m[2]);
  if (!m || port < 1 || port > 65535) {
    throw badParameter(`Invalid public address "${addr}" for the install script: expected host:port such as "auth.example.com:3025"`);
  }
  return addr;
}

function checkPin(pin: string): string {
  if (!/^sha256:[0-9a-f]{64}$/.test(pin)) {
    throw badParameter(`Invalid CA pin "${pin}" for the install script: expected "sha256:" and 64 lowercase hex digits`);
  }
  return pin;
}

/** Re-encodes the one certificate canonically and makes sure the pin names it. */
function checkCa(pem: string, pin: string): string {
  const blocks = pemDecodeAll(pem).filter((b) => b.label === "CERTIFICATE");
  if (blocks.length !== 1) {
    throw badParameter(`Invalid CA certificate for the install script: expected one PEM certificate, found ${blocks.length}`);
  }
  const canonical = pemEncode("CERTIFICATE", blocks[0]!.der).trimEnd();
  let actual: string;
  try {
    actual = caPinOf(canonical);
  } catch (e) {
    throw badParameter("Invalid CA certificate for the install script: it does not parse as X.509", { cause: e });
  }
  if (actual !== pin) throw badParameter(`Invalid CA pin "${pin}" for the install script: the CA certificate's pin is "${actual}"`);
  return canonical;
}
