/**
 * A throwaway CA and a server certificate it signed, for test servers on loopback
 * (valid an hour back and a day ahead, for 127.0.0.1 and the given DNS names).
 */

import { createCA, generateKeyPair, issueCertificate, privateKeyToPem, type KeyPair } from "../src/crypto/index.ts";

export interface TestServerTls {
  caPem: string;
  /** The CA's key pair, for tests that issue more certificates from it. */
  caKey: KeyPair;
  certPem: string;
  keyPem: string;
}

export async function testServerTls(commonName: string, dnsNames: string[] = []): Promise<TestServerTls> {
  const now = new Date();
  const notBefore = new Date(now.getTime() - 3_600_000);
  const notAfter = new Date(now.getTime() + 86_400_000);
  const caKey = generateKeyPair("ecdsa-p256");
  const caPem = await createCA({ commonName: `${commonName} CA`, keyPair: caKey, notBefore, notAfter });
  const serverKey = generateKeyPair("ecdsa-p256");
  const certPem = await issueCertificate({
    caCertPem: caPem,
    caKey: caKey.privateKey,
    publicKey: serverKey.publicKey,
    commonName,
    ...(dnsNames.length > 0 ? { dnsNames } : {}),
    ipAddresses: ["127.0.0.1"],
    notBefore,
    notAfter,
    usage: "server",
  });
  return { caPem, caKey, certPem, keyPem: privateKeyToPem(serverKey.privateKey) };
}
