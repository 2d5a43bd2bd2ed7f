/**
 * Reading a whole body with a ceiling: past it the stream is cancelled (which closes
 * the connection it comes from) and an error thrown, so a peer cannot make us hold
 * more than `maxBytes` of its answer.
 */

import { AppError } from "./errors.ts";

/**
 * Reads `body` whole as bytes, refusing more than `maxBytes`: past it the stream is
 * cancelled and `onTooLarge()` thrown. A failed read throws `onReadError(e)`, or the
 * read's own error when none is given. A body that came in one chunk is returned as
 * is, without a copy (the renewal path reads many such small bodies).
 */
export async function readCappedBytes(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  onTooLarge: () => Error,
  onReadError?: (e: unknown) => Error,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array();
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const chunk = await reader.read().catch((e: unknown) => {
      throw onReadError ? onReadError(e) : e;
    });
    if (chunk.done) break;
    size += chunk.value.byteLength;
    if (size > maxBytes) {
      void reader.cancel().catch(() => {});
      throw onTooLarge();
    }
    chunks.push(chunk.value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Reads `body` whole as UTF-8 text, refusing more than `maxBytes` with TOO_LARGE (`what` names it in the error). */
export async function readCapped(body: ReadableStream<Uint8Array> | null, maxBytes: number, what: string): Promise<string> {
  const bytes = await readCappedBytes(body, maxBytes, () =>
    new AppError("TOO_LARGE", `Cannot read ${what}: larger than ${maxBytes} bytes`, { details: { reason: "too_large", limit: maxBytes } }),
  );
  // Buffer rather than TextDecoder: it keeps a leading BOM, as this always did
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}
