/**
 * Renders a kustomization with the real kubectl (`kubectl kustomize`, offline) and
 * parses the objects with the repo's YAML library.
 */

import { parseAllDocuments } from "yaml";

/** A Kubernetes object as rendered; fields are read by the tests that know them. */
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };

/** `kubectl kustomize dir`, parsed; throws with kubectl's message when it fails. */
export function kustomize(dir: string): K8sObject[] {
  const r = Bun.spawnSync(["kubectl", "kustomize", dir], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`kubectl kustomize ${dir} exited ${r.exitCode}: ${r.stderr.toString()}`);
  return parseAllDocuments(r.stdout.toString()).map((d) => {
    if (d.errors.length) throw d.errors[0];
    return d.toJS() as K8sObject;
  });
}

/** The one object of `kind` (and `name`, when given); throws naming what is missing. */
export function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`Expected one ${kind}${name ? ` "${name}"` : ""}, found ${found.length}`);
  return found[0]!;
}
