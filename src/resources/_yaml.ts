/**
 * YAML (and JSON) text → plain values that remember where each node came from, so a
 * validation error about `spec.allow.logins[0]` can point at its line and column.
 */

import { Alias, LineCounter, isMap, isPair, isScalar, isSeq, parseAllDocuments, type Document, type Node } from "yaml";
import { badParameter, type SourcePosition } from "../lib/errors.ts";

/** A path into a parsed value: mapping keys and list indexes. */
export type ValuePath = readonly PropertyKey[];

/** Where an error about a path should point: at the key naming it, or at its value. */
export type PointAt = "key" | "value";

/** One document of a source file. */
export interface SourceDocument {
  /** The plain value: mappings are objects, sequences arrays; `key: null` entries are dropped. */
  value: unknown;
  /** 0-based index of the document in its file. */
  index: number;
  /** The position of the node at `path`, or of its nearest existing ancestor. */
  locate(path: ValuePath, at?: PointAt): SourcePosition | undefined;
}

// A `*alias` may expand to at most this many nodes: stops "billion laughs" documents.
const MAX_ALIAS_COUNT = 100;

/**
 * Parses `text` as a stream of YAML documents (JSON is YAML). Empty documents (only
 * comments, or a stray `---`) are skipped. A syntax error anywhere throws
 * BAD_PARAMETER with the position of the first one; every error is listed in
 * `details.errors`.
 */
export function parseSource(text: string, file: string): SourceDocument[] {
  return parseFast(text, file) ?? parseLocated(text, file);
}

// What sends a text to the yaml package: anchors and aliases (its alias limit), tags,
// flow mappings, block scalars, merge keys, directives and document markers, tabs, and
// signed hex or octal numbers (Bun reads "-0x1F" as a number, the package as a string),
// and "__proto__" (the package keeps it an ordinary key: see stripNulls).
const NOT_PLAIN = /[&*!{}|>\t]|<<|^(?:---|\.\.\.|%)|[-+]0[xXoO]|__proto__/m;
// A mapping key at the start of a line, after any "- " list markers.
const KEY_LINE = /^[ ]*(?:-[ ]+)*("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#"'-][^#]*?|-[^\s#][^#]*?)[ ]*:(?:[ ]|$)/;

/**
 * The common case, a plain block document, read with Bun's native YAML parser: the yaml
 * package took ~2 ms of a oneshot's CPU for a 12-line config (bench/RESULTS.md). Undefined
 * (and the yaml package reads it) unless the text is plain (NOT_PLAIN), Bun reads it, and
 * every key written in the text is one key in the result: Bun keeps the last of duplicate
 * keys, which the yaml package refuses. Both agree on every YAML file in this repository
 * and its scenarios (tests/resources/yaml_fast.test.ts). Positions, needed only for an
 * error, come from the yaml package on first use.
 */
function parseFast(text: string, file: string): SourceDocument[] | undefined {
  if (NOT_PLAIN.test(text)) return undefined;
  let value: unknown;
  try {
    value = Bun.YAML.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || value === undefined || !sameKeys(text, value)) return undefined;
  let located: SourceDocument | undefined;
  return [{ value: stripNulls(value), index: 0, locate: (path, at) => (located ??= parseLocated(text, file)[0])?.locate(path, at) }];
}

/** Whether the keys written in `text` are exactly the keys of `value`'s mappings, as multisets. */
function sameKeys(text: string, value: unknown): boolean {
  const written: string[] = [];
  for (const line of text.split("\n")) {
    const m = KEY_LINE.exec(line);
    if (!m) continue;
    const key = m[1]!;
    if (key.startsWith('"')) {
      try {
        written.push(JSON.parse(key) as string);
      } catch {
        return false;
      }
    } else if (key.startsWith("'")) written.push(key.slice(1, -1).replaceAll("''", "'"));
    else written.push(key.trimEnd());
  }
  const parsed: string[] = [];
  const collect = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(collect);
    else if (isPlainObject(v)) {
      for (const [k, x] of Object.entries(v)) {
        parsed.push(k);
        collect(x);
      }
    }
  };
  collect(value);
  if (written.length !== parsed.length) return false;
  written.sort();
  parsed.sort();
  return written.every((k, i) => k === parsed[i]);
}

/** Every document of `text` with the yaml package, which knows where each node came from. */
function parseLocated(text: string, file: string): SourceDocument[] {
  const lineCounter = new LineCounter();
  // logLevel "error": the package would otherwise print warnings (odd keys, unknown tags) to stderr.
  const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true, logLevel: "error" });
  const docs = Array.isArray(parsed) ? parsed : [];
  const position = (offset: number): SourcePosition => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };

  const errors = docs.flatMap((doc) =>
    doc.errors.map((e) => ({ message: `Invalid YAML: ${describeYamlError(e.code, e.message, text, e.pos[0])}`, position: position(e.pos[0]) })),
  );
  if (errors.length > 0) {
    // JSON that YAML rejects (tabs in odd places, say) is still JSON: accept it without positions.
    const json = tryJson(text);
    if (json !== undefined) return [{ value: stripNulls(json.value), index: 0, locate: () => ({ file }) }];
    const first = errors[0]!;
    throw badParameter(first.message, { position: first.position, details: { errors: errors.map(flatError) } });
  }

  const out: SourceDocument[] = [];
  docs.forEach((doc, index) => {
    if (doc.contents === null) return;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      // toJS fails on an undefined or runaway alias; point at the document.
      const message = e instanceof Error ? e.message : "";
      const alias = /^Unresolved alias.*: (.+)$/.exec(message)?.[1];
      const reason = alias
        ? `unresolved alias "*${alias}": define the anchor "&${alias}" before using it`
        : message
          ? lowerFirst(message)
          : "cannot resolve the document";
      throw badParameter(`Invalid YAML: ${reason}`, { position: position(doc.contents.range[0]), cause: e });
    }
    // `---` with nothing after it (a trailing separator, a comment-only document) is no document.
    if (value === null || value === undefined) return;
    out.push({ value: stripNulls(value), index, locate: (path, at = "value") => locateNode(doc, path, at, position) });
  });
  return out;
}

function flatError(e: { message: string; position: SourcePosition }) {
  return { message: e.message, line: e.position.line, column: e.position.column };
}

function tryJson(text: string): { value: unknown } | undefined {
  const t = text.trim();
  if (!(t.startsWith("{") || t.startsWith("["))) return undefined;
  try {
    return { value: JSON.parse(t) };
  } catch {
    return undefined;
  }
}

/** The yaml package's messages, reworded for people who just want to fix their file. */
function describeYamlError(code: string, message: string, text: string, offset: number): string {
  switch (code) {
    case "BLOCK_AS_IMPLICIT_KEY":
      return `unexpected ":" (a plain value cannot contain ": "; quote it, or start the nested mapping on its own line)`;
    case "TAB_AS_INDENT":
      return "tabs are not allowed as indentation (use spaces)";
    case "DUPLICATE_KEY": {
      const key = /^[^\s:]+/.exec(text.slice(offset))?.[0];
      return key ? `duplicate key ${JSON.stringify(key.replace(/^["']|["']$/g, ""))}` : "duplicate key";
    }
    case "MISSING_CHAR":
      return /quote/i.test(message) ? "missing closing quote" : lowerFirst(message);
    default: {
      // Some messages end with the offending source text ("…extra characters: >.",
      // "Invalid escape sequence \."): quote it, so it reads as data, not as a full stop.
      const m = /^(.*): ([^"\s].*)$/s.exec(message) ?? (message.endsWith(".") ? /^(.*) (\S+)$/s.exec(message) : null);
      if (!m) return lowerFirst(message);
      return lowerFirst(`${m[1]}${message.startsWith(`${m[1]}: `) ? ":" : ""} ${JSON.stringify(m[2])}`);
    }
  }
}

function lowerFirst(s: string): string {
  return s.length > 1 && /^[A-Z][a-z]/.test(s) ? s[0]!.toLowerCase() + s.slice(1) : s;
}

/**
 * Drops `key: null` (and `key:` with nothing after it) from mappings, recursively, the
 * way Go's YAML decoding leaves such fields at their zero value. Nulls inside lists stay,
 * so `logins: [~]` is still reported as a wrong type.
 */
export function stripNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripNulls);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === null || v === undefined) continue;
      // defineProperty: a "__proto__" key stays an ordinary (unknown) field, never a prototype.
      Object.defineProperty(out, k, { value: stripNulls(v), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function locateNode(
  doc: Document,
  path: ValuePath,
  at: PointAt,
  position: (offset: number) => SourcePosition,
): SourcePosition | undefined {
  const resolve = (n: unknown): unknown => (n instanceof Alias ? n.resolve(doc) : n);
  let node = resolve(doc.contents) as Node | null | undefined;
  // The best position found so far: the key that leads to the current node, else the node.
  let best = node?.range ? position(node.range[0]) : undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && keyText(resolve(p.key)) === String(seg));
      if (!pair) return best;
      const key = resolve(pair.key) as Node | null;
      const value = resolve(pair.value) as Node | null;
      const keyPos = key?.range ? position(key.range[0]) : best;
      if (last && at === "key") return keyPos;
      best = value?.range ? position(value.range[0]) : keyPos;
      // A nested error is easier to find from its key than from where the mapping starts.
      if (!last) best = keyPos;
      node = value;
    } else if (isSeq(node)) {
      const item = typeof seg === "number" ? (resolve(node.items[seg]) as Node | null | undefined) : undefined;
      if (!item) return best;
      best = item.range ? position(item.range[0]) : best;
      node = item;
    } else {
      return best;
    }
  }
  return best;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}
