/**
 * Argument checks and encodings every backend shares, so that a key, a prefix, a
 * value or an event query means the same thing in SQLite and in PostgreSQL.
 */

import { badParameter, errorMessage } from "../../lib/errors.ts";
import type { Condition, ConditionalOp, EventQuery, StoredEvent } from "./backend.ts";

const MAX_KEY_BYTES = 1024;
const MAX_EVENT_TYPE_LENGTH = 256;
// C0 controls and DEL: they make keys unreadable in logs and ambiguous in listings.
const CONTROL = /[\u0000-\u001f\u007f]/;
// A lone surrogate would be stored as U+FFFD, so two different keys could collide.
const LONE_SURROGATE = /\p{Cs}/u;

/** Throws BAD_PARAMETER unless `key` follows the key rules of Backend. */
export function checkKey(key: unknown): string {
  if (typeof key !== "string") throw badParameter(`Cannot use ${describe(key)} as a storage key: it is not a string`);
  const reason = keyProblem(key);
  if (reason) throw badParameter(`Cannot use "${printable(key)}" as a storage key: ${reason}`, { field: "key" });
  return key;
}

function keyProblem(key: string): string | undefined {
  if (!key.startsWith("/")) return "it must start with /";
  if (key.endsWith("/")) return key === "/" ? "it names no item" : "it must not end with /";
  if (CONTROL.test(key)) return "it contains a control character";
  if (LONE_SURROGATE.test(key)) return "it is not valid Unicode";
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) return `it is longer than ${MAX_KEY_BYTES} bytes`;
  for (const seg of key.slice(1).split("/")) {
    if (seg === "") return "it has an empty segment";
    if (seg === "." || seg === "..") return `it has a "${seg}" segment`;
  }
  return undefined;
}

/**
 * The half-open key range `[low, high)` that holds exactly the keys under `prefix`.
 * The prefix is a directory, so `low` ends with `/` and `high` replaces that `/`
 * with `0`, the next byte: every key between them starts with `low` and no other does.
 */
export function prefixRange(prefix: unknown): { low: string; high: string } {
  if (typeof prefix !== "string") throw badParameter(`Cannot list ${describe(prefix)}: a prefix is a string`);
  if (prefix === "" || prefix === "/") return { low: "/", high: "0" };
  const dir = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  const reason = keyProblem(dir);
  if (reason) throw badParameter(`Cannot list "${printable(prefix)}": ${reason}`, { field: "prefix" });
  return { low: dir + "/", high: dir + "0" };
}

/**
 * The JSON text of a value, or BAD_PARAMETER when JSON cannot represent it. `doing`
 * completes "Cannot …" in the message, `noun` names the value there.
 */
export function encodeJson(value: unknown, doing: string, noun = "its value"): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw badParameter(`Cannot ${doing}: ${noun} cannot be written as JSON (${errorMessage(e)})`, { cause: e });
  }
  if (text === undefined) throw badParameter(`Cannot ${doing}: ${noun} is ${describe(value)}, which JSON cannot hold`);
  return text;
}

/** Milliseconds since the epoch of an optional expiry, checked. */
export function expiryMs(key: string, expires: unknown): number | null {
  if (expires === undefined || expires === null) return null;
  if (!(expires instanceof Date) || Number.isNaN(expires.getTime())) {
    throw badParameter(`Cannot store "${key}": its expiry is not a valid date`, { field: "expires" });
  }
  return expires.getTime();
}

/** Stands for a revision string that no stored revision can equal. */
export const NO_REVISION = -1;

/**
 * A revision as the number the databases store; NO_REVISION when the string cannot be
 * one of ours (revisions are positive). Strict digits only: "05" or " 5" must not
 * match revision 5 through SQL's numeric conversions.
 */
export function revisionNumber(revision: unknown): number {
  if (typeof revision !== "string") throw badParameter(`Cannot compare revision ${describe(revision)}: a revision is a string`);
  if (!/^[1-9][0-9]{0,15}$/.test(revision)) return NO_REVISION;
  const n = Number(revision);
  return Number.isSafeInteger(n) ? n : NO_REVISION;
}

/** A checked `limit`: a non-negative integer, or undefined for no limit. */
export function checkLimit(limit: unknown): number | undefined {
  if (limit === undefined) return undefined;
  if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 0) {
    throw badParameter(`Cannot use ${describe(limit)} as a limit: it must be a non-negative integer`, { field: "limit" });
  }
  return limit;
}

/** An event ready to insert. */
export interface EventRow {
  type: string;
  timeMs: number;
  fields: string;
}

/** Checks an event to append and encodes its fields. */
export function checkEvent(e: Omit<StoredEvent, "id">): EventRow {
  if (typeof e !== "object" || e === null) throw badParameter(`Cannot append ${describe(e)} as an event`);
  if (typeof e.type !== "string" || e.type === "" || e.type.length > MAX_EVENT_TYPE_LENGTH) {
    throw badParameter(`Cannot append an event of type ${describe(e.type)}: a type is 1 to ${MAX_EVENT_TYPE_LENGTH} characters`, {
      field: "type",
    });
  }
  if (!(e.time instanceof Date) || Number.isNaN(e.time.getTime())) {
    throw badParameter(`Cannot append a "${e.type}" event: its time is not a valid date`, { field: "time" });
  }
  if (typeof e.fields !== "object" || e.fields === null || Array.isArray(e.fields)) {
    throw badParameter(`Cannot append a "${e.type}" event: its fields are not an object`, { field: "fields" });
  }
  return { type: e.type, timeMs: e.time.getTime(), fields: encodeJson(e.fields, `append a "${e.type}" event`, "its fields") };
}

/** Turns a stored event row back into a StoredEvent. */
export function decodeEvent(id: number | string, type: string, timeMs: number, fields: string): StoredEvent {
  return { id: Number(id), type, time: new Date(timeMs), fields: JSON.parse(fields) as Record<string, unknown> };
}

/** An EventQuery with every field checked; `types` undefined means any type. */
export interface NormalizedEventQuery {
  types: string[] | undefined;
  sinceMs: number | undefined;
  untilMs: number | undefined;
  limit: number | undefined;
  desc: boolean;
  afterId: number | undefined;
}

/** Checks an EventQuery. */
export function checkEventQuery(q: EventQuery = {}): NormalizedEventQuery {
  const date = (d: unknown, field: string): number | undefined => {
    if (d === undefined) return undefined;
    if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw badParameter(`Cannot list events: "${field}" is not a valid date`, { field });
    return d.getTime();
  };
  if (q.types !== undefined && (!Array.isArray(q.types) || q.types.some((t) => typeof t !== "string"))) {
    throw badParameter(`Cannot list events: "types" must be a list of strings`, { field: "types" });
  }
  if (q.order !== undefined && q.order !== "asc" && q.order !== "desc") {
    throw badParameter(`Cannot list events in order ${describe(q.order)}: use "asc" or "desc"`, { field: "order" });
  }
  if (q.afterId !== undefined && (typeof q.afterId !== "number" || !Number.isSafeInteger(q.afterId))) {
    throw badParameter(`Cannot list events after id ${describe(q.afterId)}: it must be an integer`, { field: "afterId" });
  }
  return {
    types: q.types === undefined ? undefined : [...q.types],
    sinceMs: date(q.since, "since"),
    untilMs: date(q.until, "until"),
    limit: checkLimit(q.limit),
    desc: q.order === "desc",
    afterId: q.afterId,
  };
}

/** One op of an atomic write, checked and encoded. */
export interface AtomicOp {
  key: string;
  condition: Condition;
  /** The JSON of a put, null for a delete, undefined for a nop. */
  put: { json: string; expiresMs: number | null } | null | undefined;
}

/** Checks the ops of an atomic write: valid keys, each at most once, known kinds. */
export function checkOps(ops: ConditionalOp[]): AtomicOp[] {
  if (!Array.isArray(ops)) throw badParameter(`Cannot apply the atomic write: its operations are not a list`);
  const seen = new Set<string>();
  return ops.map((op) => {
    const key = checkKey(op?.key);
    if (seen.has(key)) throw badParameter(`Cannot apply the atomic write: "${key}" appears twice`, { field: "key" });
    seen.add(key);
    const c = op.condition;
    if (c?.kind === "revision") revisionNumber(c.revision); // rejects a non-string
    else if (c?.kind !== "exists" && c?.kind !== "notExists" && c?.kind !== "whatever") {
      throw badParameter(`Cannot apply the atomic write: "${key}" has an unknown condition ${describe((c as { kind?: unknown } | undefined)?.kind)}`, { field: "condition" });
    }
    const a = op.action;
    if (a?.kind === "put") return { key, condition: c, put: { json: encodeJson(a.value, `store "${key}"`), expiresMs: expiryMs(key, a.expires) } };
    if (a?.kind === "delete") return { key, condition: c, put: null };
    if (a?.kind === "nop") return { key, condition: c, put: undefined };
    throw badParameter(`Cannot apply the atomic write: "${key}" has an unknown action ${describe((a as { kind?: unknown } | undefined)?.kind)}`, { field: "action" });
  });
}

/** Checks the events of an atomic write. */
export function checkEvents(events: Omit<StoredEvent, "id">[] | undefined): EventRow[] {
  if (events === undefined) return [];
  if (!Array.isArray(events)) throw badParameter(`Cannot apply the atomic write: its events are not a list`);
  return events.map(checkEvent);
}

/** A value as a message may name it, without dumping objects or functions. */
function describe(v: unknown): string {
  switch (typeof v) {
    case "string":
      return `"${printable(v)}"`;
    case "undefined":
      return "undefined";
    case "function":
      return "a function";
    case "object":
      return v === null ? "null" : Array.isArray(v) ? "a list" : "an object";
    default:
      return `${typeof v} ${String(v)}`;
  }
}

/** A key as it may appear in a message: control characters escaped, long keys cut. */
function printable(s: string): string {
  const shown = s.length > 120 ? s.slice(0, 120) + "…" : s;
  return shown.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
