/**
 * `machine-id keypair create`: the commander command, and the functions behind it
 * for tests and other entry points.
 */

export { keypairCommand } from "./command.ts";
export { createKeypair, type KeypairCreateOptions, type KeypairCreateResult, type KeyLocation } from "./create.ts";
export { exampleToken, renderJson, renderText } from "./_render.ts";
