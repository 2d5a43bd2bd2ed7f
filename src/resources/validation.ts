/**
 * The parsing and validation machinery resources use, for the config layer to reuse:
 * YAML with positions, zod issues worded as messages, and the shared field schemas.
 */

export { parseSource, isPlainObject, type SourceDocument, type ValuePath } from "./_yaml.ts";
export {
  check,
  problemsError,
  formatPath,
  formatValue,
  expecting,
  type Problem,
  type ValidationContext,
  type CheckResult,
} from "./_issues.ts";
export {
  raise,
  text,
  stringList,
  resourceName,
  nameProblem,
  durationString,
  durationProblem,
  parseRfc3339,
  labelMap,
} from "./_fields.ts";
export { closest, editDistance } from "./_suggest.ts";
