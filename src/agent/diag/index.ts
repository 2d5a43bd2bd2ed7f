/**
 * Diagnostics: health, metrics and the HTTP listener that serves them.
 */

export { HealthRegistry, type HealthStatus, type Readiness, type ServiceHealth } from "./health.ts";
export { AgentMetrics, type AgentMetricsOptions } from "./metrics.ts";
export { diagHandler, parseListenAddr, startDiagServer, type DiagOptions, type DiagServer } from "./server.ts";
