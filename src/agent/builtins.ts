/**
 * The join methods, destination types and output types this build provides, in one
 * list. Registration is explicit, not a side effect of importing a module: whoever
 * builds an Agent (or a Bot on its own) calls `registerBuiltins()` first, and a type
 * is then available however the agent's modules were imported.
 */

import { registerJoinMethod, tokenJoin } from "./bot/index.ts";
import { boundKeypairJoin } from "./bound_keypair/index.ts";
import { circleciJoin, githubJoin, gitlabJoin } from "./ci/index.ts";
import { directoryDestination, memoryDestination, registerDestination } from "./destinations/index.ts";
import { kubernetesJoin, kubernetesOutput, kubernetesSecretDestination, kubernetesV2Output } from "./kubernetes/index.ts";
import { identityOutput, registerOutput } from "./outputs/index.ts";

let registered = false;

/**
 * Registers every built-in join method, destination type and output type, once; later
 * calls change nothing (so a test's own registration stays until it undoes it).
 * A new join method is one line here.
 */
export function registerBuiltins(): void {
  if (registered) return;
  registered = true;
  registerJoinMethod(tokenJoin);
  registerJoinMethod(boundKeypairJoin);
  registerJoinMethod(kubernetesJoin());
  registerJoinMethod(githubJoin());
  registerJoinMethod(gitlabJoin());
  registerJoinMethod(circleciJoin());
  registerDestination("directory", directoryDestination);
  registerDestination("memory", memoryDestination);
  registerDestination("kubernetes_secret", kubernetesSecretDestination);
  registerOutput(identityOutput);
  registerOutput(kubernetesOutput);
  registerOutput(kubernetesV2Output);
}
