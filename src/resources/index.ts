/**
 * The domain model: role, bot and token resources with validation and defaults,
 * access decisions over roles, and the YAML/zod machinery config files reuse.
 */

export {
  KINDS,
  parseResources,
  parseResource,
  serializeResources,
  checkAndSetDefaults,
  checkRole,
  checkBot,
  checkToken,
  type Kind,
  type Resource,
  type ResourceOf,
} from "./resource.ts";
export {
  ROLE_VERSIONS,
  KUBERNETES_KINDS,
  KUBERNETES_VERBS,
  DEFAULT_MAX_SESSION_TTL,
  roleSchema,
  roleMaxSessionTtlMs,
  type RoleResource,
  type RoleVersion,
  type RoleConditions,
  type LabelSelector,
  type KubernetesResourceRule,
} from "./role.ts";
export {
  BOT_VERSIONS,
  BOT_MAX_TTL_CAP_MS,
  DEFAULT_BOT_MAX_SESSION_TTL,
  botSchema,
  botMaxTtlMs,
  botTraits,
  type BotResource,
  type BotTrait,
} from "./bot.ts";
export {
  TOKEN_VERSIONS,
  JOIN_METHODS,
  RECOVERY_MODES,
  KUBERNETES_JOIN_TYPES,
  MIN_SECRET_TOKEN_NAME_LENGTH,
  tokenSchema,
  tokenExpires,
  tokenExpired,
  tokenFingerprint,
  maskSecret,
  type TokenResource,
  type JoinMethod,
  type RecoveryMode,
  type BoundKeypairSpec,
  type BoundKeypairStatus,
  type KubernetesJoinSpec,
} from "./token.ts";
export { CI_RULE_FIELDS, type GithubJoinSpec, type GitlabJoinSpec, type CircleciJoinSpec, type CiAllowRule } from "./_ci_token.ts";
export { metadataExpires, type Metadata } from "./_metadata.ts";
export {
  applyTraits,
  roleLogins,
  matchLabels,
  globMatch,
  kubernetesAccess,
  kubernetesPrincipals,
  type Traits,
  type KubernetesRequest,
  type AccessDecision,
} from "./access.ts";
export * from "./validation.ts";
