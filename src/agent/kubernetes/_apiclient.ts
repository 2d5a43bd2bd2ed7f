/**
 * The agent's door to the Kubernetes API of the cluster its pod runs in, found the
 * way client libraries find it: KUBERNETES_SERVICE_HOST/PORT, and the service
 * account's token and CA mounted in the pod. TLS is always verified against that CA;
 * tests mount their own directory (MACHINE_ID_SERVICE_ACCOUNT_DIR) with their CA.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError, connectionProblem, errorMessage } from "../../lib/errors.ts";
import { fsError } from "../../lib/fs.ts";

/** Overrides where the service account's token, ca.crt and namespace are read. */
export const SERVICE_ACCOUNT_DIR_ENV = "MACHINE_ID_SERVICE_ACCOUNT_DIR";
/** Where the kubelet mounts a pod's service account. */
export const DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export type Env = Record<string, string | undefined>;

/** The service account directory `env` points at. */
export function serviceAccountDir(env: Env): string {
  return env[SERVICE_ACCOUNT_DIR_ENV] || DEFAULT_SERVICE_ACCOUNT_DIR;
}

/** An answer from the API server: its status and JSON body (undefined when there was none). */
export interface ApiAnswer {
  status: number;
  json: unknown;
}

const TIMEOUT_MS = 30_000;

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw fsError(`read ${what}`, path, e);
  }
}

/** JSON requests to the in-cluster API server as the pod's service account. */
export class InClusterApi {
  private readonly server: string;
  private readonly dir: string;

  /** Throws NOT_IMPLEMENTED when `env` does not describe a pod's environment. */
  constructor(env: Env) {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT;
    if (!host || !port) {
      throw new AppError(
        "NOT_IMPLEMENTED",
        "Cannot reach the Kubernetes API: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set, so the agent is not running in a pod",
      );
    }
    this.server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.dir = serviceAccountDir(env);
  }

  /** The namespace the pod's service account belongs to (its mounted `namespace` file). */
  async podNamespace(): Promise<string> {
    return (await readText(join(this.dir, "namespace"), "the pod's namespace")).trim();
  }

  /**
   * Sends one request. The token and CA are read for every request: the kubelet
   * rotates the token file, and a request is rare (one per output renewal).
   */
  async request(method: string, path: string, body?: unknown): Promise<ApiAnswer> {
    const [token, ca] = await Promise.all([
      readText(join(this.dir, "token"), "the service account token"),
      readText(join(this.dir, "ca.crt"), "the cluster CA"),
    ]);
    let res: Response;
    try {
      res = await fetch(this.server + path, {
        method,
        headers: {
          authorization: `Bearer ${token.trim()}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(TIMEOUT_MS),
        tls: { ca, rejectUnauthorized: true },
      } as RequestInit);
    } catch (e) {
      throw connectionProblem(`Cannot reach the Kubernetes API at "${this.server}": ${errorMessage(e)}`, { cause: e });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      throw connectionProblem(`Unexpected answer from the Kubernetes API at "${this.server}" to ${method} ${path}: HTTP ${res.status}, not JSON`);
    }
    return { status: res.status, json };
  }
}

/** The `message` of a Kubernetes Status body, for error messages. */
export function statusMessage(json: unknown): string {
  const m = (json as { message?: unknown } | undefined)?.message;
  return typeof m === "string" && m !== "" ? m : "no message";
}
