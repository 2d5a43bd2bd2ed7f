/**
 * Tests that need a real tool fail, never skip, when it is missing: a skipped test
 * proves nothing. The message says how to get the tool.
 */

/** Throws unless every named prerequisite holds; values are the fix to print. */
export function requirePrereqs(prereqs: Record<string, [ok: boolean, fix: string]>): void {
  const missing = Object.entries(prereqs).filter(([, [ok]]) => !ok);
  if (missing.length === 0) return;
  const lines = missing.map(([what, [, fix]]) => `  - ${what}: ${fix}`);
  throw new Error(`This test needs:\n${lines.join("\n")}\n(scripts/install-test-deps.sh installs the tools; run the suite as root as CI does)`);
}

export const isRoot = process.getuid?.() === 0;
export const has = (cmd: string) => Bun.which(cmd) !== null;
