/**
 * Role patterns: `*` globs, or a regular expression when written `^…$` (the convention
 * Teleport roles use for label values and Kubernetes resource names).
 */

// Role patterns repeat across every access check: compile each once. The cap keeps a
// stream of distinct patterns (roles being edited for weeks) from growing it forever.
const cache = new Map<string, RegExp>();
const CACHE_LIMIT = 1000;

/**
 * Compiles a role pattern. Throws SyntaxError for an invalid `^…$` expression; a glob
 * never fails. Regular expressions come from roles, which only administrators write,
 * so their cost is trusted the way the rest of the role is.
 */
export function compilePattern(pattern: string): RegExp {
  let re = cache.get(pattern);
  if (re) return re;
  if (isRegexPattern(pattern)) {
    re = new RegExp(pattern, "u");
  } else {
    const body = pattern
      .split("*")
      .map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"))
      .join(".*");
    re = new RegExp(`^${body}$`, "su");
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(pattern, re);
  return re;
}

/** True when the pattern is a regular expression rather than a glob. */
export function isRegexPattern(pattern: string): boolean {
  return pattern.length >= 2 && pattern.startsWith("^") && pattern.endsWith("$");
}

/** Why `pattern` cannot be used, or undefined when it compiles. */
export function patternProblem(pattern: string): string | undefined {
  try {
    compilePattern(pattern);
    return undefined;
  } catch (e) {
    // The engine's message repeats "Invalid regular expression: /…/u:" before the reason.
    const reason = (e instanceof Error ? e.message : String(e)).replace(/^Invalid regular expression:\s*(\/.*\/\w*:\s*)?/, "");
    return `invalid regular expression: ${reason}`;
  }
}

/**
 * Whether `value` matches `pattern`: `*` alone matches anything, `*` inside a glob
 * matches any run of characters, `^…$` is a regular expression, anything else is
 * compared exactly. An invalid regular expression matches nothing.
 */
export function globMatch(pattern: string, value: string): boolean {
  if (pattern === "*") return true;
  try {
    return compilePattern(pattern).test(value);
  } catch {
    return false;
  }
}
