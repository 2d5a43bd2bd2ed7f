/**
 * Sets zod's `jitless` before any schema module loads (commands.ts imports this first).
 * Its own module, imported by name, so the bundle keeps only the parts of zod the
 * program uses: `(await import("zod")).config(…)` took zod's whole namespace, every
 * locale and the JSON Schema converters included (462 kB of the agent's chunks).
 */

import { config } from "zod";

config({ jitless: true });
