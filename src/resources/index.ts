/**
 * The domain model: role, bot and token resources with validation and defaults,
 * access decisions over roles, and the YAML/zod machinery config files reuse.
 * Exports what other layers import; the rest stays inside the folder.
 */

export { parseResources, parseResource, serializeResources, checkAndSetDefaults, type Resource } from "./resource.ts";
export { roleMaxSessionTtlMs, type RoleResource, type KubernetesResourceRule } from "./role.ts";
export { botMaxTtlMs, botTraits, type BotResource } from "./bot.ts";
export { JOIN_METHODS, tokenExpires, tokenExpired, tokenFingerprint, type TokenResource, type JoinMethod, type BoundKeypairStatus } from "./token.ts";
export {
  applyTraits,
  roleLogins,
  matchLabels,
  globMatch,
  kubernetesAccess,
  kubernetesPrincipals,
  type KubernetesRequest,
  type AccessDecision,
} from "./access.ts";
export { CI_JOIN_METHODS, type CiJoinMethod, type GithubJoinSpec, type GitlabJoinSpec, type CircleciJoinSpec } from "./_ci_token.ts";
export * from "./validation.ts";
