/**
 * The `kubernetes_secret` destination: an output's files (or the agent's own storage)
 * as the keys of one Secret, written through the Kubernetes API. Every write is one
 * create or replace carrying all the keys, guarded by the Secret's resourceVersion:
 * a reader (a pod mounting the Secret) never sees half an update, and a concurrent
 * change is read again and retried rather than overwritten.
 */

import { AppError, errorMessage } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log.ts";
import { checkFileName, type Destination, type DestinationFactory, type FileData } from "../destinations/index.ts";
import { InClusterApi, statusMessage, type Env } from "./_apiclient.ts";

/** Conflicting writes are retried this many times before the write fails. */
const MAX_ATTEMPTS = 5;
const MANAGED_BY = { "app.kubernetes.io/managed-by": "machine-id" };

export interface SecretDestinationOptions {
  name: string;
  /** Absent: $POD_NAMESPACE, else the service account's own namespace. */
  namespace?: string;
  log: Logger;
  /** Where the in-cluster settings are read; default process.env. */
  env?: Env;
}

/** The Secret as read: its keys decoded, and the version a replace must name. */
interface SecretState {
  resourceVersion: string;
  data: Record<string, string>;
}

function decodeData(json: unknown): SecretState {
  const obj = json as { metadata?: { resourceVersion?: unknown }; data?: Record<string, unknown> } | undefined;
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj?.data ?? {})) if (typeof v === "string") data[k] = v;
  return { resourceVersion: String(obj?.metadata?.resourceVersion ?? ""), data };
}

const encode = (d: FileData) => Buffer.from(typeof d === "string" ? Buffer.from(d, "utf8") : d).toString("base64");

/** A Secret in the pod's cluster. */
export class KubernetesSecretDestination implements Destination {
  readonly isPersistent = true;
  private readonly env: Env;
  private readonly log: Logger;
  private apiValue: InClusterApi | undefined;
  private namespaceValue: string | undefined;

  constructor(private readonly options: SecretDestinationOptions) {
    this.env = options.env ?? process.env;
    this.log = options.log;
    this.namespaceValue = options.namespace || this.env.POD_NAMESPACE || undefined;
  }

  /** Built on first use, so an agent outside a pod fails at the first write with a clear message, not at start-up. */
  private get api(): InClusterApi {
    this.apiValue ??= new InClusterApi(this.env);
    return this.apiValue;
  }

  get description(): string {
    return `kubernetes_secret "${this.namespaceValue ? `${this.namespaceValue}/` : ""}${this.options.name}"`;
  }

  private async namespace(): Promise<string> {
    this.namespaceValue ??= await this.api.podNamespace().catch((e: unknown) => {
      throw new AppError(
        "BAD_PARAMETER",
        `Cannot tell which namespace ${this.description} is in: set destination.namespace or $POD_NAMESPACE (${errorMessage(e)})`,
        { cause: e },
      );
    });
    return this.namespaceValue;
  }

  private async apiPath(withName: boolean): Promise<string> {
    const ns = encodeURIComponent(await this.namespace());
    return `/api/v1/namespaces/${ns}/secrets${withName ? `/${encodeURIComponent(this.options.name)}` : ""}`;
  }

  private failure(action: string, status: number, json: unknown): AppError {
    const why = statusMessage(json);
    if (status === 401 || status === 403) {
      return new AppError(
        "ACCESS_DENIED",
        `Cannot ${action} ${this.description}: the service account may not (HTTP ${status}: ${why}); grant it get, create and update on secrets in its namespace (k8s-rbac.yaml)`,
      );
    }
    return new AppError("CONNECTION_PROBLEM", `Cannot ${action} ${this.description}: the Kubernetes API answered HTTP ${status}: ${why}`);
  }

  /** The Secret, or undefined when it does not exist. */
  private async get(): Promise<SecretState | undefined> {
    const r = await this.api.request("GET", await this.apiPath(true));
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw this.failure("read", r.status, r.json);
    return decodeData(r.json);
  }

  private async body(data: Record<string, string>, resourceVersion?: string): Promise<unknown> {
    return {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: this.options.name, namespace: await this.namespace(), labels: MANAGED_BY, ...(resourceVersion ? { resourceVersion } : {}) },
      type: "Opaque",
      data,
    };
  }

  /**
   * Creates the Secret with `data`, or replaces it with its keys merged with `data`, in
   * one request. A 409 (created meanwhile, or changed since it was read) starts over.
   */
  private async update(data: Record<string, string>): Promise<void> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const current = await this.get();
      const r = current
        ? await this.api.request("PUT", await this.apiPath(true), await this.body({ ...current.data, ...data }, current.resourceVersion))
        : await this.api.request("POST", await this.apiPath(false), await this.body(data));
      if (r.status === 200 || r.status === 201) return;
      if (r.status !== 409) throw this.failure("write", r.status, r.json);
      this.log.debug("The Secret changed while it was written: reading it again", { destination: this.description, attempt });
    }
    throw new AppError("COMPARE_FAILED", `Cannot write ${this.description}: it changed under every one of ${MAX_ATTEMPTS} attempts`);
  }

  /** Creates the Secret, empty, when it does not exist yet. */
  async init(): Promise<void> {
    if (await this.get()) return;
    const r = await this.api.request("POST", await this.apiPath(false), await this.body({}));
    if (r.status !== 201 && r.status !== 200 && r.status !== 409) throw this.failure("create", r.status, r.json);
  }

  /** Checks the Secret can be read (which also proves the API and the service account work). */
  async verify(): Promise<void> {
    await this.get();
  }

  async write(name: string, data: FileData): Promise<void> {
    await this.update({ [checkFileName(name)]: encode(data) });
  }

  async writeAll(files: Record<string, FileData>): Promise<void> {
    const data: Record<string, string> = {};
    for (const [name, content] of Object.entries(files)) data[checkFileName(name)] = encode(content);
    await this.update(data);
  }

  async read(name: string): Promise<string | undefined> {
    const value = (await this.get())?.data[checkFileName(name)];
    return value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8");
  }
}

/** The `kubernetes_secret` destination type (registered in builtins.ts). */
export const kubernetesSecretDestination: DestinationFactory = (config, deps) => {
  if (config.type !== "kubernetes_secret") throw new TypeError(`kubernetes_secret factory given a "${config.type}" destination`);
  return new KubernetesSecretDestination({ name: config.name, ...(config.namespace ? { namespace: config.namespace } : {}), log: deps.log });
};
