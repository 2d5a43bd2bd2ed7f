/**
 * Service health as /readyz reports it: every service says whether it is
 * initializing, healthy or unhealthy (with a reason); the agent is ready only when
 * all of them are healthy.
 */

export type HealthStatus = "initializing" | "healthy" | "unhealthy";

export interface ServiceHealth {
  status: HealthStatus;
  reason?: string;
}

/** The readiness document served at /readyz. */
export interface Readiness {
  status: HealthStatus;
  services: Record<string, ServiceHealth>;
}

/** A table of service health; cheap to update on every iteration. */
export class HealthRegistry {
  private readonly services = new Map<string, ServiceHealth>();

  /** Records a service's status; `reason` is dropped when healthy. */
  set(name: string, status: HealthStatus, reason?: string): void {
    this.services.set(name, status === "healthy" || reason === undefined ? { status } : { status, reason });
  }

  /** Forgets a service (an output removed by a config reload). */
  remove(name: string): void {
    this.services.delete(name);
  }

  names(): string[] {
    return [...this.services.keys()];
  }

  /** Overall status: unhealthy if any service is, else initializing if any is, else healthy. */
  snapshot(): Readiness {
    const services = Object.fromEntries([...this.services].map(([k, v]) => [k, { ...v }]));
    const all = Object.values(services).map((s) => s.status);
    const status: HealthStatus = all.includes("unhealthy") ? "unhealthy" : all.includes("initializing") || all.length === 0 ? "initializing" : "healthy";
    return { status, services };
  }
}
