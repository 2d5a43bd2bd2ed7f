/**
 * Outputs: what the agent writes for other programs; the `identity` output type
 * (builtins.ts registers it).
 */

export { identityOutput, issueIdentityFiles, type IssuedIdentity } from "./identity.ts";
export { buildOutput, outputName, registerOutput, type Output, type OutputBuilder, type OutputDeps } from "./output.ts";
export { IDENTITY_FILES, knownHostsLines, renderIdentityFiles, renderSshConfig, sshConfigPath, type IdentityFilesInput } from "./identity_files.ts";
