/**
 * The parts every resource shares: `metadata` and the kind/version header.
 */

import * as z from "zod";
import { labelMap, parseRfc3339, resourceName, timeString } from "./_fields.ts";

/** `metadata` with the given rule for `name`. */
export const metadataSchema = (name: z.ZodType<string> = resourceName()) =>
  z.strictObject({
    name,
    description: z.string().optional(),
    labels: labelMap().optional(),
    /** RFC 3339; the service deletes the resource after this time. */
    expires: timeString().optional(),
    /** Set by the service on read; echoed back on update for compare-and-swap. */
    revision: z.string().optional(),
  });

/** The metadata every resource carries. */
export type Metadata = z.output<ReturnType<typeof metadataSchema>>;

/** When the resource expires, or undefined when it never does. */
export function metadataExpires(metadata: Metadata): Date | undefined {
  return metadata.expires === undefined ? undefined : parseRfc3339(metadata.expires);
}
