/**
 * What the auth service needs to hand out the agent: the rendered install script and
 * the binaries, as Request → Response handlers app.ts mounts as routes.
 */

export { renderInstallScript, shellQuote, caPinOf } from "./script.ts";
export type { InstallScriptOptions, DownloadTrust, BuildChecksums } from "./script.ts";
export { serveInstallScript, serveDownload, loadBuildChecksums, INSTALL_SCRIPT_PATH, DOWNLOAD_ARCHES } from "./downloads.ts";
export type { DownloadOptions, DownloadArch } from "./downloads.ts";
