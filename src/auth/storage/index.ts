/**
 * The auth service's storage: open a backend with `openBackend` and use it through the
 * `Backend` interface. Contracts are documented in backend.ts and docs/storage.md.
 */

export type {
  Action,
  Backend,
  BackendConfig,
  Condition,
  ConditionalOp,
  EventQuery,
  Item,
  ListOptions,
  OpenOptions,
  StoredEvent,
  WriteOptions,
} from "./backend.ts";
export { openBackend } from "./open.ts";
