/**
 * The agent config file as written: the tbot v2 schema and the older v1 schema, in
 * their snake_case form. `_agent_translate.ts` turns either into `AgentConfig`.
 */

import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { JOIN_METHODS, durationString, expecting, labelMap, raise, stringList, text } from "../resources/index.ts";

export const SYMLINKS_MODES = ["secure", "try-secure", "insecure"] as const;
export const ACLS_MODES = ["off", "try", "required"] as const;
export const LOG_FORMATS = ["text", "json"] as const;
export const DEFAULT_STORAGE_PATH = "/var/lib/machine-id";

/** `onboarding`, the same in v1 and v2. */
export const onboardingSchema = lazy(() => z.strictObject({
  join_method: z.enum(JOIN_METHODS).optional(),
  /** The token, or a path to a file holding it (starting with "/" or "./"). */
  token: z.string().optional(),
  ca_pins: stringList().default([]),
  ca_path: text().optional(),
  bound_keypair: z
    .strictObject({
      static_private_key_path: text().optional(),
      registration_secret: z.string().min(1).optional(),
      registration_secret_path: text().optional(),
    })
    .optional(),
  /** join_method gitlab: the variable the job's id_tokens section fills (TBOT_GITLAB_JWT by default). */
  gitlab: z.strictObject({ token_env_var_name: text().optional() }).optional(),
}));

/**
 * Output directories default to acls "try": a directory prepared by `init
 * --reader-user` then lets its readers in. The agent's own storage defaults to "off":
 * its renewable identity is for the agent alone.
 */
export const OUTPUT_DEFAULT_ACLS = "try" as const;
export const STORAGE_DEFAULT_ACLS = "off" as const;

const directoryFields = (acls: (typeof ACLS_MODES)[number]) => ({
  symlinks: z.enum(SYMLINKS_MODES).default("try-secure"),
  acls: z.enum(ACLS_MODES).default(acls),
});

const memoryDestination = lazy(() => z.strictObject({ type: z.literal("memory") }));
const secretDestination = lazy(() => z.strictObject({ type: z.literal("kubernetes_secret"), name: text(), namespace: text().optional() }));

/** Where an output is written (v2). */
export const destinationSchema = lazy(() => z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("directory"), path: text(), ...directoryFields(OUTPUT_DEFAULT_ACLS) }),
  memoryDestination,
  secretDestination,
]));

/** Where the agent keeps its own identity (v2): a destination whose directory has a default. */
export const storageSchema = lazy(() => z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("directory"), path: text().default(DEFAULT_STORAGE_PATH), ...directoryFields(STORAGE_DEFAULT_ACLS) }),
  memoryDestination,
  secretDestination,
]));

const sshConfigSchema = lazy(() => expecting(z.union([z.enum(["on", "off"]), z.boolean()]), `"on" or "off"`));

/**
 * One selector of a kubernetes/v2 output, as tbot has it: a cluster by `name`, or every
 * cluster whose labels include all of `labels` — exactly one of the two.
 */
const kubernetesSelectorSchema = lazy(() => z
  .strictObject({ name: text().optional(), labels: labelMap().optional() })
  .superRefine((sel, ctx) => {
    const hasLabels = sel.labels !== undefined && Object.keys(sel.labels).length > 0;
    if (sel.name !== undefined && sel.labels !== undefined) {
      raise(ctx, ["labels"], "forbidden", "name is set: a selector picks a cluster by name or by labels, not both (use two selectors)");
    } else if (sel.name === undefined && !hasLabels) {
      raise(ctx, ["name"], "missing", `a selector needs "name: <cluster>" or "labels: {key: value}"`);
    }
  }));

/** One output (v2); `services` entries use the same schema. */
export const outputSchema = lazy(() => z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("identity"),
    destination: destinationSchema,
    roles: stringList().default([]),
    ssh_config: sshConfigSchema.default("on"),
  }),
  z.strictObject({
    type: z.literal("kubernetes"),
    destination: destinationSchema,
    kubernetes_cluster: text(),
    roles: stringList().default([]),
  }),
  z.strictObject({
    type: z.literal("kubernetes/v2"),
    destination: destinationSchema,
    selectors: z.array(kubernetesSelectorSchema).superRefine((list, ctx) => {
      if (list.length === 0) raise(ctx, [], "invalid", "at least one selector is needed, such as \"- name: <cluster>\" or \"- labels: {env: prod}\"", "list");
    }),
    disable_exec_plugin: z.boolean().default(false),
  }),
]));

const common = lazy(() => ({
  auth_server: text().optional(),
  onboarding: onboardingSchema.prefault({}),
  renewal_interval: durationString().optional(),
  oneshot: z.boolean().default(false),
  debug: z.boolean().default(false),
  diag_addr: text().optional(),
}));

/** tbot v2. */
export const agentV2Schema = lazy(() => z
  .strictObject({
    version: z.literal("v2"),
    ...common,
    proxy_server: text().optional(),
    storage: storageSchema.optional(),
    outputs: z.array(outputSchema).default([]),
    services: z.array(outputSchema).default([]),
    credential_ttl: durationString().optional(),
    /** The older name of credential_ttl. */
    certificate_ttl: durationString().optional(),
    insecure: z.boolean().default(false),
    log_format: z.enum(LOG_FORMATS).default("text"),
  })
  .superRefine((c, ctx) => {
    if (c.credential_ttl !== undefined && c.certificate_ttl !== undefined) {
      raise(ctx, ["certificate_ttl"], "forbidden", `it is another name for credential_ttl: set only one`);
    }
  }));

export type AgentV2File = z.output<typeof agentV2Schema>;

/** v1 config templates a destination may list. */
export const V1_TEMPLATES = ["ssh_client", "identity", "tls", "tls_cas", "kubernetes"] as const;

const v1Directory = lazy(() => expecting(
  // acls stays unset here: its default depends on whether this is storage or an output
  z.union([text(), z.strictObject({ path: text(), symlinks: z.enum(SYMLINKS_MODES).default("try-secure"), acls: z.enum(ACLS_MODES).optional() })]),
  "a path or a mapping with a path",
));

// "Exactly one of directory or memory", for v1 storage and destinations.
function oneLocation(v: { directory?: unknown; memory?: boolean | undefined }, ctx: z.RefinementCtx): void {
  if (v.directory !== undefined && v.memory) {
    raise(ctx, ["memory"], "forbidden", `a destination is either a directory or memory: remove one`);
  } else if (v.directory === undefined && !v.memory) {
    raise(ctx, ["directory"], "missing", `set "directory: <path>" or "memory: true"`);
  }
}

const v1Template = lazy(() => expecting(
  z.union([
    z.enum(V1_TEMPLATES),
    z
      .strictObject(Object.fromEntries(V1_TEMPLATES.map((t) => [t, z.record(z.string(), z.unknown()).optional()])))
      .superRefine((m, ctx) => {
        if (Object.keys(m).length !== 1) raise(ctx, [], "invalid", `expected a single template name`);
      }),
  ]),
  "a template name",
));

/** tbot v1 (no `version`, or `version: v1`). */
export const agentV1Schema = lazy(() => z.strictObject({
  version: z.literal("v1").optional(),
  ...common,
  storage: z.strictObject({ directory: v1Directory.optional(), memory: z.boolean().optional() }).superRefine(oneLocation).optional(),
  destinations: z
    .array(
      z
        .strictObject({
          directory: v1Directory.optional(),
          memory: z.boolean().optional(),
          kubernetes_cluster: text().optional(),
          roles: stringList().optional(),
          configs: z.array(v1Template).optional(),
        })
        .superRefine(oneLocation),
    )
    .default([]),
  certificate_ttl: durationString().optional(),
}));

export type AgentV1File = z.output<typeof agentV1Schema>;

/** Top-level fields only v2 has: named when a v1 file (no `version`) uses them. */
export const V2_ONLY_FIELDS = new Set(["outputs", "services", "proxy_server", "credential_ttl", "insecure", "log_format"]);
