/**
 * The version and git commit, embedded by build.ts at compile time
 * (`--define`); a source checkout reports the package version and "dev".
 */

import pkg from "../../package.json" with { type: "json" };

declare const MACHINE_ID_VERSION: string | undefined;
declare const MACHINE_ID_COMMIT: string | undefined;

export const VERSION: string = typeof MACHINE_ID_VERSION === "string" ? MACHINE_ID_VERSION : pkg.version;
export const COMMIT: string = typeof MACHINE_ID_COMMIT === "string" ? MACHINE_ID_COMMIT : "dev";
