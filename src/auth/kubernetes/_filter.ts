/**
 * Filtering what a list or watch returns down to the objects the bot's roles allow:
 * plain lists (`items`), the tables kubectl asks for (`rows[].object`) and watch
 * event streams. Anything whose name cannot be read is left out, never let through.
 */

import { AppError } from "../../lib/errors.ts";

/** Whether the object with this name (and namespace) may be shown. */
export type ObjectCheck = (object: { name: string; namespace?: string }) => boolean;

/** A single watch event (one JSON line) above this size ends the stream. */
const MAX_EVENT_BYTES = 16 << 20;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function metadataOf(obj: unknown): { name: string; namespace?: string } | undefined {
  const md = isObject(obj) ? obj.metadata : undefined;
  if (!isObject(md) || typeof md.name !== "string" || md.name === "") return undefined;
  return typeof md.namespace === "string" && md.namespace !== "" ? { name: md.name, namespace: md.namespace } : { name: md.name };
}

const allowed = (obj: unknown, check: ObjectCheck) => {
  const md = metadataOf(obj);
  return md !== undefined && check(md);
};

/**
 * The object with what may not be shown removed: the rows of a Table, the items of a
 * list. Returns undefined for a single object that may not be shown. A list's
 * `remainingItemCount` goes, since it would count hidden objects.
 */
export function filterObject(obj: unknown, check: ObjectCheck): unknown {
  if (!isObject(obj)) return undefined;
  if (obj.kind === "Table" && Array.isArray(obj.rows)) {
    return { ...obj, rows: obj.rows.filter((row) => isObject(row) && allowed(row.object, check)) };
  }
  if (Array.isArray(obj.items)) {
    const md = isObject(obj.metadata) ? { ...obj.metadata } : {};
    delete md.remainingItemCount;
    return { ...obj, metadata: md, items: obj.items.filter((item) => allowed(item, check)) };
  }
  if (obj.kind === "Status") return obj;
  return allowed(obj, check) ? obj : undefined;
}

/** Filters the JSON text of a list answer; a body that is not JSON cannot be checked and is refused. */
export function filterListText(text: string, check: ObjectCheck): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AppError("CONNECTION_PROBLEM", "The Kubernetes API server answered a list with something other than JSON, which the proxy cannot filter");
  }
  const out = filterObject(parsed, check);
  if (out === undefined) throw new AppError("ACCESS_DENIED", "The Kubernetes API server answered a list with an object the roles do not allow");
  return JSON.stringify(out);
}

/** One watch event line, filtered; undefined when the event must be dropped. */
function filterEvent(line: string, check: ObjectCheck): string | undefined {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isObject(ev) || typeof ev.type !== "string") return undefined;
  // Errors and bookmarks carry no object of the watched kind.
  if (ev.type === "ERROR" || ev.type === "BOOKMARK") return line;
  const obj = filterObject(ev.object, check);
  if (obj === undefined) return undefined;
  if (isObject(obj) && Array.isArray(obj.rows) && obj.rows.length === 0) return undefined;
  return JSON.stringify({ ...ev, object: obj });
}

/**
 * A watch stream (one JSON event per line, as the API server writes them) with the
 * events about objects that may not be shown dropped, passed on as they arrive.
 */
export function filterWatchStream(body: ReadableStream<Uint8Array>, check: ObjectCheck): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let pending = "";
  const emit = (controller: TransformStreamDefaultController<Uint8Array>, line: string) => {
    if (line.trim() === "") return;
    const out = filterEvent(line, check);
    if (out !== undefined) controller.enqueue(encoder.encode(out + "\n"));
  };
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          emit(controller, pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
        if (pending.length > MAX_EVENT_BYTES) controller.error(new AppError("TOO_LARGE", `A watch event is larger than ${MAX_EVENT_BYTES} bytes`));
      },
      flush(controller) {
        emit(controller, pending + decoder.decode());
      },
    }),
  );
}
