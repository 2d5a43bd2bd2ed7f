/**
 * The crypto layer's public API: keys, certificate identities, X.509 issuance and
 * verification, CA pins and OpenSSH certificates. Pure: no file system, no network.
 */

export {
  formatSshPublicKey,
  generateKeyPair,
  keyAlgorithmOf,
  keyId,
  parsePrivateKey,
  parsePublicKey,
  privateKeyToOpenSsh,
  privateKeyToPem,
  publicKeySpkiDer,
  publicKeyToPem,
  sshFingerprint,
  type KeyAlgorithm,
  type KeyPair,
} from "./keys.ts";
export { decodeIdentity, encodeIdentity, IDENTITY_OID, type CertIdentity } from "./identity.ts";
export { signCompactJws, verifyCompactJws, type JwsAlgorithm } from "./jws.ts";
export {
  caPin,
  certChainPem,
  createCA,
  issueCertificate,
  matchesPin,
  parseCertificate,
  parsePin,
  splitCertificatesPem,
  verifyCertificate,
  type CaPin,
  type CreateCAOptions,
  type IssueCertificateOptions,
  type ParsedCertificate,
  type VerifyCertificateOptions,
} from "./x509.ts";
export {
  DEFAULT_USER_EXTENSIONS,
  knownHostsCertAuthorityLine,
  parseSshCertificate,
  signSshCertificate,
  verifySshCertificate,
  type ParsedSshCertificate,
  type SignSshCertificateOptions,
} from "./ssh.ts";
