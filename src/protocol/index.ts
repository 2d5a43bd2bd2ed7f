/**
 * The contract between the agent or ctl and the auth service: routes, message
 * schemas, the error-code ↔ HTTP-status map, the identity file and the client.
 */

export * from "./messages.ts";
export * from "./errors.ts";
export * from "./client.ts";
export * from "./identity_file.ts";
