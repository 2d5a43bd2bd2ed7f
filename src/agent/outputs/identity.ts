/**
 * The `identity` output: a fresh key per renewal and non-renewable certificates for
 * the bot's roles, written as key, certificates, CA bundles, known_hosts, ssh_config
 * and the combined identity file.
 */

import { formatSshPublicKey, generateKeyPair, privateKeyToPem } from "../../crypto/index.ts";
import { AGENT_KEY_ALGORITHM, publicKeys } from "../bot/index.ts";
import { outputName, registerOutput, type Output } from "./output.ts";
import { renderIdentityFiles } from "./identity_files.ts";

registerOutput({
  type: "identity",
  build(config, deps, index): Output {
    const destination = deps.destination(config.destination);
    return {
      name: outputName("identity", destination, index),
      destination,
      async init() {
        await destination.init();
        await destination.verify();
      },
      async render() {
        // A new key every time: an output's key never outlives its certificates.
        const key = generateKeyPair(AGENT_KEY_ALGORITHM);
        const res = await deps.botCerts({
          ...publicKeys(key),
          ttl_seconds: Math.max(1, Math.round(deps.credentialTtlMs / 1000)),
          ...(config.roles.length > 0 ? { roles: config.roles } : {}),
        });
        const id = deps.identity();
        const files = renderIdentityFiles({
          keyPem: privateKeyToPem(key.privateKey),
          publicKeyLine: formatSshPublicKey(key.publicKey),
          certs: res.certs,
          ...(destination.path ? { dir: destination.path } : {}),
          ...(id ? { authServer: id.authServer, botName: id.botName } : {}),
          sshConfig: config.sshConfig,
        });
        await destination.writeAll(files);
      },
    };
  },
});
