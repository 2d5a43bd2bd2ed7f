/**
 * Resolving a kubernetes/v2 output's selectors against the clusters the bot's roles
 * reach, as tbot does: a named cluster must be there (a hard error otherwise), a label
 * selector picks every cluster whose labels include all of its own (possibly none),
 * and the result keeps the selectors' order with each cluster once.
 */

import type { KubernetesSelector } from "../../config/index.ts";
import { AppError } from "../../lib/errors.ts";
import type { KubernetesClusterInfo } from "../../protocol/index.ts";

/** What the selectors picked. */
export interface SelectedClusters {
  /** Cluster names in selector order, without repeats; the first is the kubeconfig's current context. */
  names: string[];
  /** Indexes of label selectors that matched no cluster (worth a warning: a typo, or a cluster not added yet). */
  unmatched: number[];
}

/** Whether `labels` has every key of `wanted` with the same value (exact match, as tbot's label query). */
export function labelsInclude(labels: Readonly<Record<string, string>>, wanted: Readonly<Record<string, string>>): boolean {
  return Object.entries(wanted).every(([k, v]) => Object.prototype.hasOwnProperty.call(labels, k) && labels[k] === v);
}

/** `env=prod,team=a`, for messages. */
export const formatLabels = (labels: Readonly<Record<string, string>>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

/**
 * Picks the clusters the selectors name among `reachable` (what the auth service says
 * the bot's roles reach). NOT_FOUND naming the reachable clusters when a selector names
 * a cluster that is not among them.
 */
export function resolveSelectors(selectors: readonly KubernetesSelector[], reachable: readonly KubernetesClusterInfo[]): SelectedClusters {
  const names: string[] = [];
  const unmatched: number[] = [];
  const add = (n: string) => {
    if (!names.includes(n)) names.push(n);
  };
  selectors.forEach((sel, i) => {
    if ("name" in sel) {
      if (!reachable.some((c) => c.name === sel.name)) {
        const known = reachable.length ? `it reaches ${reachable.map((c) => `"${c.name}"`).join(", ")}` : "it reaches none";
        throw new AppError(
          "NOT_FOUND",
          `Kubernetes cluster "${sel.name}" (selectors[${i}]) is not served by the auth service or the bot's roles do not reach it: ${known}`,
          { details: { reason: "cluster_not_reachable", cluster: sel.name } },
        );
      }
      add(sel.name);
      return;
    }
    const matched = reachable.filter((c) => labelsInclude(c.labels, sel.labels));
    if (matched.length === 0) unmatched.push(i);
    for (const c of matched) add(c.name);
  });
  return { names, unmatched };
}
