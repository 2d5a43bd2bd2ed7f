/**
 * Reading one config file: exactly one YAML document, validated with the resource
 * layer's machinery so config errors read like resource errors.
 */

import { readFile } from "node:fs/promises";
import { badParameter } from "../lib/errors.ts";
import { fsError } from "../lib/fs.ts";
import { check, parseSource, type CheckResult, type SourceDocument, type ValidationContext } from "../resources/index.ts";
import type { z } from "zod";

/** The single document of a config file; an empty file is an empty mapping. */
export function parseConfigDocument(text: string, file: string): SourceDocument {
  const docs = parseSource(text, file);
  if (docs.length > 1) {
    throw badParameter(`Expected one YAML document in "${file}", found ${docs.length}`, { position: docs[1]!.locate([]) ?? { file } });
  }
  return docs[0] ?? { value: {}, index: 0, locate: () => ({ file }) };
}

/** Validates a config document against `schema`, with positions from the document. */
export function checkDocument<T extends z.ZodType>(
  schema: T,
  doc: SourceDocument,
  ctx: Omit<ValidationContext, "locate">,
): CheckResult<z.output<T>> {
  return check(schema, doc.value, { ...ctx, locate: doc.locate });
}

/** Reads a config file, with the usual message when it cannot be read. */
export async function readConfigFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw fsError("read config", path, e);
  }
}
