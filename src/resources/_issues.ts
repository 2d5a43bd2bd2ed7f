/**
 * The glue between zod and people: turns schema issues into messages that name the
 * field path, its line and column, what was wrong and what is allowed.
 */

import * as z from "zod";
import { badParameter, type AppError, type SourcePosition } from "../lib/errors.ts";
import { unwrapLazy } from "../lib/lazy.ts";
import { isPlainObject, type PointAt, type ValuePath } from "./_yaml.ts";
import { closest } from "./_suggest.ts";

/** What a schema expects, in words ("a duration such as \"1h\""); overrides the derived text. */
export const expectations = z.registry<{ expected: string; plural?: string }>();

/** Attaches the words `expected` (and their plural) to `schema` for type errors. */
export function expecting<T extends z.ZodType>(schema: T, expected: string, plural?: string): T {
  expectations.add(schema, plural === undefined ? { expected } : { expected, plural });
  return schema;
}

/** How a custom issue is worded; set as `params` on issues raised by refinements. */
export interface ProblemParams {
  /** missing: a required field is absent; forbidden: a field must not be set; invalid: a bad value. */
  problem: "missing" | "forbidden" | "invalid";
  /** The noun for the value ("duration", "time"); default "value". */
  what?: string;
}

/** One thing wrong with an input: the full message, the field path and where it is. */
export interface Problem {
  message: string;
  field: string;
  position?: SourcePosition;
  /** Internal: the field path a "missing" problem is about. */
  missing?: string;
  /** Internal: the field path an "unknown field" problem suggests instead. */
  suggests?: string;
}

/** Where and how problems are reported. */
export interface ValidationContext {
  /** Names what is being validated in messages: `role "admin"`, `agent config`. */
  subject: string;
  /** Maps a path to its position in the source; absent for JSON bodies. */
  locate?: (path: ValuePath, at: PointAt) => SourcePosition | undefined;
  /** Values at these paths are never echoed back (join secrets). */
  isSecret?: (path: ValuePath) => boolean;
  /** Extra words for an unknown field when no close name exists. */
  unknownFieldHint?: (path: ValuePath) => string | undefined;
}

/** Either the validated value or every problem found. */
export type CheckResult<T> = { ok: true; value: T } | { ok: false; problems: Problem[] };

/** Validates `input` against `schema`; never throws for any input. */
export function check<T extends z.ZodType>(schema: T, input: unknown, ctx: ValidationContext): CheckResult<z.output<T>> {
  const known = new WeakMap<object, string[]>();
  let result: ReturnType<T["safeParse"]>;
  try {
    result = schema.safeParse(input, { error: (iss) => errorMap(iss, known) }) as ReturnType<T["safeParse"]>;
  } catch (e) {
    // Only reachable with values no YAML or JSON parser produces (throwing getters…).
    return { ok: false, problems: [{ message: `Invalid ${ctx.subject}: ${e instanceof Error ? e.message : String(e)}`, field: "" }] };
  }
  if (result.success) return { ok: true, value: result.data as z.output<T> };
  const problems = result.error.issues.flatMap((issue) => toProblems(issue as Issue, [], input, ctx, known));
  return { ok: false, problems: sortProblems(withoutEchoes(problems)) };
}

// "metdaata" is both an unknown field and a missing "metadata": one mistake, reported once,
// as the unknown field that says what to rename.
function withoutEchoes(problems: Problem[]): Problem[] {
  const suggested = new Set(problems.map((p) => p.suggests).filter((s) => s !== undefined));
  return problems.filter((p) => p.missing === undefined || !suggested.has(p.missing)).map(({ missing, suggests, ...p }) => p);
}

/** Validates `input` against `schema`, throwing BAD_PARAMETER for the first problem. */
export function validate<T extends z.ZodType>(schema: T, input: unknown, ctx: ValidationContext): z.output<T> {
  const r = check(schema, input, ctx);
  if (!r.ok) throw problemsError(r.problems);
  return r.value;
}

/**
 * One AppError for a list of problems: the message and position of the first, and all
 * of them in `details.errors` as `{ message, field, line?, column? }`.
 */
export function problemsError(problems: Problem[]): AppError {
  const first = problems[0] ?? { message: "Invalid input", field: "" };
  return badParameter(first.message, {
    ...(first.field ? { field: first.field } : {}),
    ...(first.position ? { position: first.position } : {}),
    details: {
      errors: problems.map((p) => ({
        message: p.message,
        field: p.field,
        ...(p.position?.line !== undefined ? { line: p.position.line, column: p.position.column } : {}),
      })),
    },
  });
}

/** Orders problems by where they are in the file, keeping schema order otherwise. */
export function sortProblems(problems: Problem[]): Problem[] {
  const key = (p: Problem) => [p.position?.line ?? Infinity, p.position?.column ?? Infinity] as const;
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => {
      const [al, ac] = key(a.p);
      const [bl, bc] = key(b.p);
      return al !== bl ? al - bl : ac !== bc ? ac - bc : a.i - b.i;
    })
    .map((x) => x.p);
}

/** `spec.allow.logins[0]`; keys that are not identifiers are quoted: `labels["app.kubernetes.io/name"]`. */
export function formatPath(path: ValuePath): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else {
      const s = String(seg);
      out += /^[A-Za-z_][A-Za-z0-9_-]*$/.test(s) ? (out ? "." : "") + s : `[${JSON.stringify(s)}]`;
    }
  }
  return out;
}

/** Quotes strings, shortens long ones; other scalars as written. */
export function formatValue(v: unknown): string {
  if (typeof v === "string") {
    const s = v.length > 100 ? `${v.slice(0, 97)}...` : v;
    return JSON.stringify(s);
  }
  return String(v);
}

// The subset of zod's issue fields this file reads.
interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  keys?: string[];
  values?: unknown[];
  options?: unknown[];
  discriminator?: string;
  errors?: Issue[][];
  minimum?: number | bigint;
  maximum?: number | bigint;
  origin?: string;
  inclusive?: boolean;
  params?: Partial<ProblemParams>;
}

interface RawIssue {
  code: string;
  expected?: string | undefined;
  input?: unknown;
  inst?: unknown;
  discriminator?: string | undefined;
}

// Runs inside zod for every issue: the only place that sees the schema (`inst`), so it
// words type errors and remembers each strict object's field names for suggestions.
function errorMap(iss: RawIssue, known: WeakMap<object, string[]>): string | undefined {
  const inst = iss.inst as z.ZodType | undefined;
  switch (iss.code) {
    case "invalid_type":
      return iss.expected === "int" ? "an integer" : inst ? describe(inst) : undefined;
    case "invalid_union":
      return !iss.discriminator && inst ? describe(inst) : undefined;
    case "unrecognized_keys": {
      const shape = (inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
      if (shape && typeof iss.input === "object" && iss.input !== null) known.set(iss.input, Object.keys(shape));
      return undefined;
    }
    default:
      return undefined;
  }
}

type Def = {
  type: string;
  element?: z.ZodType;
  innerType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
  entries?: Record<string, unknown>;
  values?: unknown[];
  getter?: () => z.ZodType;
};

/** Words for what a schema accepts: "a list of strings", `one of "a", "b"`. */
export function describe(schema: z.ZodType): string {
  // a lazy schema nested in another is its stand-in here; the registry knows the schema
  const meta = expectations.get(unwrapLazy(schema));
  if (meta) return meta.expected;
  const def = (schema as unknown as { _zod: { def: Def; bag?: { format?: string } } })._zod.def;
  const bag = (schema as unknown as { _zod: { bag?: { format?: string } } })._zod.bag;
  switch (def.type) {
    case "string":
      return "a string";
    case "number":
      return bag?.format?.includes("int") ? "an integer" : "a number";
    case "boolean":
      return "true or false";
    case "array":
      return `a list of ${plural(def.element!)}`;
    case "object":
    case "record":
      return "a mapping";
    case "enum":
      return `one of ${Object.values(def.entries ?? {}).map((v) => formatValue(v)).join(", ")}`;
    case "literal":
      return (def.values ?? []).map((v) => formatValue(v)).join(" or ");
    case "union":
      return [...new Set((def.options ?? []).map(describe))].join(" or ");
    case "optional":
    case "nullable":
    case "default":
    case "prefault":
    case "nonoptional":
    case "readonly":
    case "catch":
      return describe(def.innerType!);
    case "pipe":
      return describe(def.in!);
    case "lazy":
      return describe(def.getter!());
    default:
      return "a valid value";
  }
}

function plural(schema: z.ZodType): string {
  let s = schema;
  // Unwrap so a registered plural on the inner schema is found.
  for (;;) {
    const meta = expectations.get(unwrapLazy(s));
    if (meta?.plural) return meta.plural;
    const def = (s as unknown as { _zod: { def: Def } })._zod.def;
    if (def.innerType && ["optional", "nullable", "default", "prefault", "nonoptional", "readonly", "catch"].includes(def.type)) {
      s = def.innerType;
    } else break;
  }
  const one = describe(s);
  const m = /^an? (\S+)(.*)$/.exec(one);
  if (m) return `${m[1]}s${m[2]}`;
  if (one.startsWith("one of ")) return `values from ${one.slice("one of ".length)}`;
  return `values (${one})`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const seg of path) {
    if (Array.isArray(v) && typeof seg === "number") v = v[seg];
    else if (typeof v === "object" && v !== null && Object.prototype.hasOwnProperty.call(v, seg)) v = (v as Record<PropertyKey, unknown>)[seg];
    else return undefined;
  }
  return v;
}

function kindOf(v: unknown): string {
  if (v === null) return "an empty value";
  if (Array.isArray(v)) return "a list";
  if (v instanceof Uint8Array) return "binary data";
  if (isPlainObject(v)) return "a mapping";
  if (typeof v === "string") return "a string";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a number";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (v instanceof Date) return "a date";
  return typeof v === "object" || typeof v === "undefined" ? `an ${typeof v}` : `a ${typeof v}`;
}

const isScalar = (v: unknown) => typeof v === "string" || typeof v === "number" || typeof v === "boolean";

function toProblems(issue: Issue, prefix: PropertyKey[], root: unknown, ctx: ValidationContext, known: WeakMap<object, string[]>): Problem[] {
  const path = [...prefix, ...issue.path];
  const value = valueAt(root, path);
  const field = formatPath(path);
  const where = (p: ValuePath, at: PointAt) => ctx.locate?.(p, at);
  const make = (message: string, p: ValuePath, at: PointAt): Problem => {
    const position = where(p, at);
    return { message, field: formatPath(p), ...(position ? { position } : {}) };
  };
  const missing = (note?: string, discriminator = false): Problem => {
    // "typ: sqlite" where the discriminator "type" is required: name the misspelt key, as
    // an unknown field would be named (a union checks its discriminator before any keys)
    const parentPath = path.slice(0, -1);
    const parent = valueAt(root, parentPath);
    const last = path.at(-1);
    const name = typeof last === "string" ? last : undefined;
    const typo =
      discriminator && isPlainObject(parent) && name !== undefined
        ? Object.keys(parent).find((k) => k !== name && closest(k, [name]) === name)
        : undefined;
    if (typo !== undefined) {
      const at = [...parentPath, typo];
      const hint = `found "${formatPath(at)}": did you mean "${name}"?${note ? ` (${note})` : ""}`;
      return { ...make(`Missing required field "${field}" in ${ctx.subject}: ${hint}`, at, "key"), missing: field };
    }
    return { ...make(`Missing required field "${field}" in ${ctx.subject}${note ? `: ${note}` : ""}`, parentPath, "key"), missing: field };
  };
  const invalid = (detail: string, what = "value") => {
    if (path.length === 0) return make(`Invalid ${ctx.subject}: ${detail}`, path, "value");
    const secret = ctx.isSecret?.(path) ?? false;
    const shown = isScalar(value) && !secret ? ` ${formatValue(value)}` : "";
    return make(`Invalid ${what}${shown} for ${field} in ${ctx.subject}: ${detail}`, path, "value");
  };
  const wrongType = (expected: string) => {
    if (value === undefined) return missing();
    // The value itself is shown when it is a short scalar in a field; otherwise its kind.
    const shown = isScalar(value) && path.length > 0 && !(ctx.isSecret?.(path) ?? false);
    return invalid(shown ? `expected ${expected}` : `expected ${expected}, got ${kindOf(value)}`);
  };

  switch (issue.code) {
    case "invalid_type":
      return [wrongType(issue.message)];
    case "unrecognized_keys": {
      const siblings = typeof value === "object" && value !== null ? (known.get(value) ?? []) : [];
      return (issue.keys ?? []).map((key) => {
        const p = [...path, key];
        const suggestion = closest(key, siblings);
        const hint = suggestion ? `did you mean "${suggestion}"?` : ctx.unknownFieldHint?.(p);
        const problem = make(`Unknown field "${formatPath(p)}" in ${ctx.subject}${hint ? `: ${hint}` : ""}`, p, "key");
        return suggestion ? { ...problem, suggests: formatPath([...path, suggestion]) } : problem;
      });
    }
    case "invalid_value": {
      const choices = allowed(issue.values ?? []);
      return [value === undefined ? missing(choices) : invalid(choices)];
    }
    case "invalid_union": {
      if (issue.discriminator !== undefined) {
        const choices = allowed(issue.options ?? []);
        return [value === undefined ? missing(choices, true) : invalid(choices)];
      }
      // A union of shapes (a string or a list of strings): when the value has the shape
      // of one branch, that branch's own complaint is the useful one.
      const branches = issue.errors ?? [];
      const matching = branches.find((b) => b.length > 0 && !b.some((i) => i.code === "invalid_type" && i.path.length === 0));
      if (matching) return matching.flatMap((i) => toProblems(i, path, root, ctx, known));
      return [wrongType(issue.message)];
    }
    case "too_small":
    case "too_big":
      return [invalid(sizeDetail(issue))];
    case "custom": {
      const params = issue.params ?? {};
      if (params.problem === "missing") return [missing(issue.message || undefined)];
      if (params.problem === "forbidden") return [make(`Unexpected field "${field}" in ${ctx.subject}: ${issue.message}`, path, "key")];
      return [invalid(issue.message, params.what)];
    }
    default:
      return [invalid(issue.message)];
  }
}

function allowed(values: unknown[]): string {
  const shown = values.map(formatValue);
  return shown.length === 1 ? `expected ${shown[0]}` : `allowed values are ${shown.join(", ")}`;
}

function sizeDetail(issue: Issue): string {
  const small = issue.code === "too_small";
  const n = Number(small ? issue.minimum : issue.maximum);
  switch (issue.origin) {
    case "array":
      if (small && n === 1) return "must not be empty";
      return small ? `must have at least ${n} items` : `must have at most ${n} items`;
    case "string":
      if (small && n === 1) return "must not be empty";
      return small ? `must be at least ${n} characters long` : `must be at most ${n} characters long`;
    default:
      if (small) return issue.inclusive === false ? `must be greater than ${n}` : `must be at least ${n}`;
      return issue.inclusive === false ? `must be less than ${n}` : `must be at most ${n}`;
  }
}
