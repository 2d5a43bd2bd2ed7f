/**
 * A temp dir for the config tests that removes itself: `using dir = new TempDir()`
 * (tests/_support/tmp.ts; kept so existing imports keep working).
 */

export { TempDir } from "../_support/tmp.ts";
