/**
 * The agent config: load a tbot v1 or v2 file into `AgentConfig`, apply flags, check,
 * and write it back as v2 YAML (what `ctl bots add` prints).
 */

import { stringify } from "yaml";
import * as z from "zod";
import { formatDuration } from "../lib/duration.ts";
import { isAppError } from "../lib/errors.ts";
import { isPlainObject, problemsError, type ValuePath } from "../resources/index.ts";
import { checkDocument, parseConfigDocument, readConfigFile } from "./_document.ts";
import { agentV1Schema, agentV2Schema, OUTPUT_DEFAULT_ACLS, STORAGE_DEFAULT_ACLS, V2_ONLY_FIELDS } from "./_agent_schema.ts";
import { translateV1, translateV2 } from "./_agent_translate.ts";
import { resolveToken } from "./_token.ts";
import type { AclsMode, AgentConfig, DestinationConfig, OutputConfig } from "./types.ts";

export { applyAgentFlags, parseStorageFlag, type AgentFlags } from "./_agent_flags.ts";
export { checkAgentConfig, MAX_CREDENTIAL_TTL_MS } from "./_agent_check.ts";
export { DEFAULT_CREDENTIAL_TTL_MS, DEFAULT_RENEWAL_INTERVAL_MS } from "./_agent_translate.ts";
export { DEFAULT_STORAGE_PATH } from "./_agent_schema.ts";

const SUBJECT = "agent config";
const SECRET_PATHS = new Set(["onboarding.token", "onboarding.bound_keypair.registration_secret"]);
const isSecret = (p: ValuePath) => SECRET_PATHS.has(p.join("."));

/**
 * The v2 shapes in a file that has no version and that the v1 schema would misread: storage
 * with a type (v1's storage has none and reports "storage.directory" missing). Top-level v2
 * fields get their own hint through `unknownFieldHint`.
 */
function v2Signs(raw: unknown): string[] {
  return isPlainObject(raw) && isPlainObject(raw.storage) && "type" in raw.storage ? ["storage.type"] : [];
}

/**
 * Parses agent config text (`file` names it in messages). No `version`, or `version:
 * v1`, reads the v1 schema; `version: v2` the v2 schema. A token that names a file is
 * read now. Defaults are filled in; the whole-config rules wait for `checkAgentConfig`,
 * because flags may still supply what the file lacks.
 */
export function parseAgentConfig(text: string, file: string): AgentConfig {
  const doc = parseConfigDocument(text, file);
  const raw = doc.value;
  const version = isPlainObject(raw) ? raw.version : undefined;
  let cfg: AgentConfig;
  if (version === "v2") {
    const r = checkDocument(agentV2Schema, doc, { subject: SUBJECT, isSecret });
    if (!r.ok) throw problemsError(r.problems);
    cfg = translateV2(r.value);
  } else if (version === undefined || version === "v1" || !isPlainObject(raw)) {
    const r = checkDocument(agentV1Schema, doc, {
      subject: SUBJECT,
      isSecret,
      unknownFieldHint: (p) =>
        p.length === 1 && V2_ONLY_FIELDS.has(String(p[0])) ? `it is a v2 field: add "version: v2" at the top of the file` : undefined,
    });
    if (!r.ok) {
      const signs = version === undefined ? v2Signs(raw) : [];
      if (signs.length > 0) {
        throw problemsError([
          {
            message: `Missing "version: v2" in ${SUBJECT}: ${signs.join(", ")} ${signs.length === 1 ? "is a v2 field" : "are v2 fields"}, and a file without a version is read as v1; add "version: v2" at the top of the file`,
            field: "version",
            position: { file, line: 1, column: 1 },
          },
          ...r.problems,
        ]);
      }
      throw problemsError(r.problems);
    }
    cfg = translateV1(r.value);
  } else {
    const r = checkDocument(z.looseObject({ version: z.enum(["v1", "v2"]) }), doc, { subject: SUBJECT });
    throw problemsError(r.ok ? [] : r.problems);
  }

  const token = cfg.onboarding.token;
  if (token !== undefined) {
    try {
      const t = resolveToken(token);
      cfg.onboarding.token = t.token;
      if (t.tokenPath !== undefined) cfg.onboarding.tokenPath = t.tokenPath;
    } catch (e) {
      if (!isAppError(e)) throw e;
      const position = doc.locate(["onboarding", "token"], "value");
      throw problemsError([{ message: e.message, field: "onboarding.token", ...(position ? { position } : {}) }]);
    }
  }
  return cfg;
}

/** Reads and parses the agent config at `path`. */
export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  return parseAgentConfig(await readConfigFile(path), path);
}

function destinationYaml(d: DestinationConfig, defaultAcls: AclsMode): Record<string, unknown> {
  switch (d.type) {
    case "directory":
      // Only what differs from the defaults, so printed configs stay short.
      return {
        type: "directory",
        path: d.path,
        ...(d.symlinks !== "try-secure" ? { symlinks: d.symlinks } : {}),
        ...(d.acls !== defaultAcls ? { acls: d.acls } : {}),
      };
    case "memory":
      return { type: "memory" };
    case "kubernetes_secret":
      return { type: "kubernetes_secret", name: d.name, ...(d.namespace !== undefined ? { namespace: d.namespace } : {}) };
  }
}

function outputYaml(o: OutputConfig): Record<string, unknown> {
  if (o.type === "kubernetes/v2") {
    return {
      type: "kubernetes/v2",
      destination: destinationYaml(o.destination, OUTPUT_DEFAULT_ACLS),
      selectors: o.selectors,
      ...(o.disableExecPlugin ? { disable_exec_plugin: true } : {}),
    };
  }
  const roles = o.roles.length > 0 ? { roles: o.roles } : {};
  if (o.type === "identity") {
    return { type: "identity", destination: destinationYaml(o.destination, OUTPUT_DEFAULT_ACLS), ...roles, ...(o.sshConfig ? {} : { ssh_config: "off" }) };
  }
  return { type: "kubernetes", destination: destinationYaml(o.destination, OUTPUT_DEFAULT_ACLS), kubernetes_cluster: o.kubernetesCluster, ...roles };
}

/**
 * Writes the config as tbot v2 YAML; `parseAgentConfig` reads back an equal config
 * (warnings aside). A token read from a file is written as that file's path, so the
 * secret is not copied into the output.
 */
export function serializeAgentConfig(cfg: AgentConfig): string {
  const o = cfg.onboarding;
  const bk = o.boundKeypair;
  const boundKeypair = {
    ...(bk.staticPrivateKeyPath !== undefined ? { static_private_key_path: bk.staticPrivateKeyPath } : {}),
    ...(bk.registrationSecret !== undefined ? { registration_secret: bk.registrationSecret } : {}),
    ...(bk.registrationSecretPath !== undefined ? { registration_secret_path: bk.registrationSecretPath } : {}),
  };
  const token = o.tokenPath ?? o.token;
  const doc = {
    version: "v2",
    ...(cfg.authServer !== undefined ? { auth_server: cfg.authServer } : {}),
    ...(cfg.proxyServer !== undefined ? { proxy_server: cfg.proxyServer } : {}),
    onboarding: {
      join_method: o.joinMethod,
      ...(token !== undefined ? { token } : {}),
      ...(o.caPins.length > 0 ? { ca_pins: o.caPins } : {}),
      ...(o.caPath !== undefined ? { ca_path: o.caPath } : {}),
      ...(Object.keys(boundKeypair).length > 0 ? { bound_keypair: boundKeypair } : {}),
      ...(o.gitlab?.tokenEnvVarName !== undefined ? { gitlab: { token_env_var_name: o.gitlab.tokenEnvVarName } } : {}),
    },
    storage: destinationYaml(cfg.storage, STORAGE_DEFAULT_ACLS),
    outputs: cfg.outputs.map(outputYaml),
    ...(cfg.services.length > 0 ? { services: cfg.services.map(outputYaml) } : {}),
    credential_ttl: formatDuration(cfg.credentialTtlMs),
    renewal_interval: formatDuration(cfg.renewalIntervalMs),
    ...(cfg.oneshot ? { oneshot: true } : {}),
    ...(cfg.debug ? { debug: true } : {}),
    ...(cfg.diagAddr !== undefined ? { diag_addr: cfg.diagAddr } : {}),
    ...(cfg.insecure ? { insecure: true } : {}),
    ...(cfg.logFormat !== "text" ? { log_format: cfg.logFormat } : {}),
  };
  return stringify(doc, { lineWidth: 0 });
}
