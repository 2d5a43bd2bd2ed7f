/**
 * The parsing and validation machinery resources use, for the config layer to reuse:
 * YAML with positions, zod issues worded as messages, and the shared field schemas.
 */

export { parseSource, stripNulls, isPlainObject, type SourceDocument, type ValuePath, type PointAt } from "./_yaml.ts";
export {
  check,
  validate,
  problemsError,
  sortProblems,
  formatPath,
  formatValue,
  describe,
  expecting,
  type Problem,
  type ProblemParams,
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
  timeString,
  parseRfc3339,
  labelMap,
  NAME_PATTERN,
  type DurationRules,
} from "./_fields.ts";
export { closest, editDistance } from "./_suggest.ts";
