/**
 * Reading a whole body with a ceiling: past it the stream is cancelled (which closes
 * the connection it comes from) and TOO_LARGE thrown, so a peer cannot make us hold
 * more than `maxBytes` of its answer.
 */

import { AppError } from "./errors.ts";

/** Reads `body` whole as UTF-8 text, refusing more than `maxBytes` (`what` names it in the error). */
export async function readCapped(body: ReadableStream<Uint8Array> | null, maxBytes: number, what: string): Promise<string> {
  if (!body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    // leaving the loop by throwing cancels the stream
    if (size > maxBytes) throw new AppError("TOO_LARGE", `Cannot read ${what}: larger than ${maxBytes} bytes`, { details: { reason: "too-large", limit: maxBytes } });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
