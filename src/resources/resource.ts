/**
 * Resources as a whole: text or JSON bodies in, validated and defaulted resources out,
 * and back to YAML or JSON. All-or-nothing: one bad document rejects the whole file.
 */

import { stringify } from "yaml";
import * as z from "zod";
import { badParameter } from "../lib/errors.ts";
import { check, problemsError, sortProblems, type Problem, type ValidationContext } from "./_issues.ts";
import { isPlainObject, parseSource, stripNulls, type PointAt, type ValuePath } from "./_yaml.ts";
import { botSchema, type BotResource } from "./bot.ts";
import { roleSchema, type RoleResource } from "./role.ts";
import { isTokenSecretPath, maskSecret, tokenSchema, type TokenResource } from "./token.ts";

/** Every kind, in the order `get all` lists them. */
export const KINDS = ["role", "bot", "token"] as const;
export type Kind = (typeof KINDS)[number];

/** Any resource. */
export type Resource = RoleResource | BotResource | TokenResource;
/** The resource type of one kind. */
export type ResourceOf<K extends Kind> = Extract<Resource, { kind: K }>;

const SCHEMAS: { [K in Kind]: z.ZodType<ResourceOf<K>> } = {
  role: roleSchema,
  bot: botSchema,
  token: tokenSchema,
};

type Locate = (path: ValuePath, at: PointAt) => ReturnType<NonNullable<ValidationContext["locate"]>>;

/** Validates one resource value, collecting problems instead of throwing. */
function checkOne(value: unknown, locate: Locate | undefined, expectedKind?: Kind): { resource?: Resource; problems: Problem[] } {
  const base = locate ? { locate } : {};
  const kindSchema = z.looseObject({ kind: expectedKind ? z.literal(expectedKind) : z.enum(KINDS) });
  const header = check(kindSchema, value, { subject: "resource", ...base });
  if (!header.ok) return { problems: header.problems };
  const kind = header.value.kind as Kind;
  const raw = value as { metadata?: { name?: unknown }; spec?: { join_method?: unknown } };
  const joinMethod = isPlainObject(raw.spec) ? raw.spec.join_method : undefined;
  const name = isPlainObject(raw.metadata) && typeof raw.metadata.name === "string" ? raw.metadata.name : undefined;
  // A token-method token's name is its secret: messages show only its first characters.
  const shownName = name === undefined ? undefined : kind === "token" && joinMethod === "token" ? maskSecret(name) : name;
  const ctx: ValidationContext = {
    subject: shownName === undefined ? kind : `${kind} ${JSON.stringify(shownName)}`,
    ...base,
    ...(kind === "token" ? { isSecret: (p: ValuePath) => isTokenSecretPath(p, joinMethod) } : {}),
  };
  const r = check(SCHEMAS[kind] as z.ZodType<Resource>, value, ctx);
  return r.ok ? { resource: r.value, problems: [] } : { problems: r.problems };
}

/**
 * Parses every resource in a YAML (multi-document, `---`) or JSON file. A document
 * may also be a list of resources (the JSON form `serializeResources` writes). Throws
 * BAD_PARAMETER for the first problem in file order, with every problem in
 * `details.errors`, and returns nothing unless every resource is valid.
 */
export function parseResources(text: string, file: string): Resource[] {
  const docs = parseSource(text, file);
  const resources: Resource[] = [];
  const problems: Problem[] = [];
  for (const doc of docs) {
    const items = Array.isArray(doc.value)
      ? doc.value.map((v, i) => ({ value: v, locate: ((p, at) => doc.locate([i, ...p], at)) as Locate }))
      : [{ value: doc.value, locate: doc.locate as Locate }];
    for (const item of items) {
      const r = checkOne(item.value, item.locate);
      if (r.resource) resources.push(r.resource);
      problems.push(...r.problems);
    }
  }
  if (problems.length > 0) throw problemsError(sortProblems(problems));
  if (resources.length === 0) throw badParameter(`No resources found in "${file}"`, { position: { file } });
  return resources;
}

/**
 * Validates one resource that arrived as a JSON value (an HTTP body): the same rules
 * and messages as `parseResources`, without positions. With `kind`, the resource must
 * be of that kind.
 */
export function parseResource(obj: unknown, kind?: Kind): Resource {
  const r = checkOne(stripNulls(obj), undefined, kind);
  if (!r.resource) throw problemsError(r.problems);
  return r.resource;
}

/**
 * Validates a resource built in code and fills in its defaults; returns a new object
 * and never changes `r`. Idempotent: the output passes again unchanged.
 */
export function checkAndSetDefaults<R extends Resource>(r: R): R {
  return parseResource(r, r.kind) as R;
}

/** The resource with its top-level fields in the canonical order. */
function ordered(r: Resource): Record<string, unknown> {
  const out: Record<string, unknown> = { kind: r.kind, version: r.version, metadata: r.metadata, spec: r.spec };
  if ("status" in r && r.status !== undefined) out.status = r.status;
  return out;
}

/**
 * Writes resources as YAML documents separated by `---`, or as a JSON list. Fields come
 * in the order kind, version, metadata, spec, status; what `parseResources` reads back
 * equals the input.
 */
export function serializeResources(rs: readonly Resource[], format: "yaml" | "json"): string {
  if (format === "json") return JSON.stringify(rs.map(ordered), null, 2) + "\n";
  // lineWidth 0: never fold long values (keys, JWKS) across lines.
  return rs.map((r) => stringify(ordered(r), { lineWidth: 0 })).join("---\n");
}
