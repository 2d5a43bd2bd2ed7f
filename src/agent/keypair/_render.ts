/**
 * What `keypair create` prints: the public key, a token to bind it (the example of
 * seed 003, with the key filled in) and how the agent finds the private key; or
 * the same as JSON for scripts.
 */

import { stringify } from "yaml";
import { formatSshPublicKey, privateKeyToPem } from "../../crypto/index.ts";
import { STATIC_KEY_ENV } from "../bound_keypair/index.ts";
import type { KeypairCreateResult } from "./create.ts";

/** The example token, in seed 003's field order; static keys need insecure recovery. */
export function exampleToken(publicKey: string, isStatic: boolean): string {
  return stringify({
    kind: "token",
    metadata: { name: "example-token" },
    spec: {
      bot_name: "example",
      bound_keypair: {
        onboarding: { initial_public_key: publicKey },
        recovery: isStatic ? { limit: 0, mode: "insecure" } : { limit: 1, mode: "standard" },
      },
      join_method: "bound_keypair",
      roles: ["Bot"],
    },
    version: "v2",
  }, { lineWidth: 0, indentSeq: false });
}

/** `{"public_key", "private_key"}`; the private key (PKCS#8 PEM) only for a static key. */
export function renderJson(r: KeypairCreateResult, isStatic: boolean): string {
  return JSON.stringify(
    {
      public_key: formatSshPublicKey(r.key.publicKey),
      ...(isStatic ? { private_key: privateKeyToPem(r.key.privateKey) } : {}),
    },
    null,
    2,
  );
}

/** The instructions for a person. */
export function renderText(r: KeypairCreateResult, isStatic: boolean): string {
  const pub = formatSshPublicKey(r.key.publicKey);
  const lines: string[] = [];
  if (r.cluster) {
    lines.push(
      `Cluster "${r.cluster.cluster_name}" answered (machine-id ${r.cluster.server_version}). This answer is not verified: the agent checks the CA pin when it joins.`,
    );
    if (!r.cluster.join_methods.includes("bound_keypair")) lines.push(`Warning: it does not list the bound_keypair join method.`);
    lines.push("");
  }
  const loc = r.location;
  if (r.reused && loc.kind !== "environment") lines.push(`Reusing the existing key in "${loc.path}" (pass --overwrite to replace it).`, "");
  lines.push(
    "To register the keypair, include this public key in the token's 'spec.bound_keypair.onboarding.initial_public_key' field:",
    "",
    pub,
    "",
    "Refer to this token example as a reference:",
    "",
    exampleToken(pub, isStatic).trimEnd(),
    "",
  );
  if (loc.kind === "environment") {
    const b64 = Buffer.from(privateKeyToPem(r.key.privateKey)).toString("base64");
    lines.push(
      "Configure your bot to use this static key by inserting the following private key value into the bot's environment, ideally via a platform-specific keystore if available:",
      "",
      `export ${STATIC_KEY_ENV}="${b64}"`,
      "",
    );
  } else if (loc.kind === "file") {
    lines.push(
      `The private key is in "${loc.path}" (mode 0600). Keep it readable only by the account that runs the agent, and point the agent's config at it:`,
      "",
      stringify({ onboarding: { join_method: "bound_keypair", token: "example-token", bound_keypair: { static_private_key_path: loc.path } } }).trimEnd(),
      "",
    );
  } else {
    lines.push(
      `The keypair is in ${loc.description} (id_bkp, id_bkp.pub). Run the agent with this storage; it keeps the join state there and rotates the key when the token asks:`,
      "",
      stringify({ onboarding: { join_method: "bound_keypair", token: "example-token" }, storage: { type: "directory", path: loc.path } }).trimEnd(),
      "",
    );
  }
  if (isStatic) {
    lines.push(
      "Note that bots joined with static keys do not support keypair rotation and will be unable to join if a rotation is requested server-side via the token's 'rotate_after' field. Additionally, 'insecure' recovery mode must be used, as shown above. See docs/bound-keypair.md.",
    );
  }
  return lines.join("\n").trimEnd() + "\n";
}
