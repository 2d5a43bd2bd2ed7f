/**
 * Small byte helpers for the hot paths: equality, hex and Buffer views that neither copy
 * (Buffer.from on a Uint8Array copies it) nor allocate more than the result.
 */

/** Whether two byte arrays hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A Buffer over the same memory as `b`. */
export const bufferView = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex of `bytes`. */
export function hex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]!];
  return s;
}
