/**
 * Destinations: where outputs and bot storage write; the built-in `directory` and
 * `memory` types (builtins.ts registers them).
 */

export { createDestination, registerDestination, checkFileName } from "./destination.ts";
export type { Destination, DestinationDeps, DestinationFactory, FileData } from "./destination.ts";
export { DirectoryDestination, directoryDestination, type DirectoryOptions } from "./directory.ts";
export { MemoryDestination, memoryDestination } from "./memory.ts";
export { aclGrantsNamedReaders, getAcls, isExtendedAcl, parseAcl, setAcl, type AclEntry } from "./acl.ts";
