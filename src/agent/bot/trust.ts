/**
 * Deciding whether the auth service is the one the admin meant, before any secret
 * is sent: its CA must match a configured pin, or be the CA in `ca_path`; with
 * neither, only an explicit `insecure: true` lets the agent go on.
 */

import { readFile } from "node:fs/promises";
import { caPin, splitCertificatesPem } from "../../crypto/index.ts";
import { badParameter, trustFailure } from "../../lib/errors.ts";
import { fsError } from "../../lib/fs.ts";
import type { Logger } from "../../lib/log.ts";
import { fetchPinnedCA } from "../../protocol/index.ts";

export interface TrustSettings {
  caPins: string[];
  caPath?: string;
  insecure: boolean;
}

/**
 * The CA certificates (PEM) to verify the auth service at `addr` with. Pins win over
 * the network: the CA fetched unverified is used only if it matches one.
 */
export async function resolveTrust(addr: string, trust: TrustSettings, log: Logger): Promise<string[]> {
  if (trust.caPath) {
    let text: string;
    try {
      text = await readFile(trust.caPath, "utf8");
    } catch (e) {
      throw fsError("read ca_path", trust.caPath, e);
    }
    const certs = splitCertificatesPem(text);
    if (certs.length === 0) throw badParameter(`Cannot use ca_path "${trust.caPath}": it holds no PEM certificate`);
    if (trust.caPins.length > 0) {
      const want = new Set(trust.caPins.map((p) => p.toLowerCase()));
      if (!certs.some((c) => want.has(caPin(c)))) {
        throw trustFailure(`Cannot use ca_path "${trust.caPath}": none of its certificates matches the configured ca_pins`);
      }
    }
    return certs;
  }
  if (trust.caPins.length > 0) return [await fetchPinnedCA(addr, trust.caPins, caPin)];
  if (trust.insecure) {
    // Explicitly asked for: take whatever CA the service presents (pinOf maps every
    // certificate to the one "pin" we accept, so the first one wins).
    const ca = await fetchPinnedCA(addr, ["insecure"], () => "insecure");
    log.warn("Trusting the auth service's CA without verification (insecure: true)", { auth_server: addr, ca_pin: caPin(ca) });
    return [ca];
  }
  throw trustFailure(
    `Cannot join through "${addr}" safely: no ca_pins or ca_path is configured, so the auth service cannot be verified; add the CA pin "ctl bots add" printed (onboarding.ca_pins or --ca-pin), or set insecure: true for a test setup`,
  );
}
