/**
 * Destinations: where outputs and bot storage write. Importing this module
 * registers the built-in `directory` and `memory` types.
 */

export { createDestination, registerDestination, checkFileName } from "./destination.ts";
export type { Destination, DestinationDeps, DestinationFactory, FileData } from "./destination.ts";
export { DirectoryDestination, type DirectoryOptions } from "./directory.ts";
export { MemoryDestination } from "./memory.ts";
export { aclGrantsNamedReaders, getAcl, isExtendedAcl, parseAcl, setAcl, type AclEntry } from "./acl.ts";
