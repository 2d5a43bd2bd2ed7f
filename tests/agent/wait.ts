/** Moved to tests/_support/wait.ts; kept so existing imports keep working. */
export { metricValue, waitFor } from "../_support/wait.ts";
