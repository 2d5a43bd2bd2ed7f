/**
 * Join methods: how an agent without an identity gets its first one. Each method
 * registers itself here (token now; bound keypair and Kubernetes register their own),
 * so the identity code never switches over method names.
 */

import { AppError } from "../../lib/errors.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log.ts";
import type { KeyPair } from "../../crypto/index.ts";
import type { OnboardingConfig } from "../../config/index.ts";
import type { AuthClient, JoinResponse } from "../../protocol/index.ts";
import { publicKeys } from "./identity.ts";
import type { BotStore } from "./store.ts";
import { Registry } from "../registry.ts";

/** Everything a join method may use. The client already verifies the auth service. */
export interface JoinContext {
  /** Verifies the server against the pinned CA; presents no client certificate. */
  client: AuthClient;
  onboarding: OnboardingConfig;
  /** The fresh key pair the new identity is issued for. */
  key: KeyPair;
  ttlSeconds: number;
  /** For join-method state that must survive restarts (bound keypair). */
  store: BotStore;
  log: Logger;
  clock: Clock;
}

/** One way of joining. */
export interface JoinMethod {
  name: string;
  /**
   * Whether the method can join again without a new secret once the identity has
   * expired (Kubernetes and bound keypair can; a one-time token cannot).
   */
  rejoinable: boolean;
  join(ctx: JoinContext): Promise<JoinResponse>;
}

const methods = new Registry<JoinMethod>("Join method");

/** Registers a join method, replacing an earlier one of the same name; returns the undo (for tests). */
export function registerJoinMethod(method: JoinMethod): () => void {
  return methods.register(method.name, method);
}

/** The join method called `name`; NOT_IMPLEMENTED when this build has none by that name. */
export function joinMethod(name: string): JoinMethod {
  return methods.get(name);
}

/** The one-time token join: the token is consumed by the auth service together with creating the instance. */
export const tokenJoin: JoinMethod = {
  name: "token",
  rejoinable: false,
  async join(ctx) {
    const token = ctx.onboarding.token;
    if (!token) throw new AppError("BAD_PARAMETER", `Join method "token" needs a token: set onboarding.token or pass --token`);
    return ctx.client.join({ join_method: "token", token_name: token, ttl_seconds: ctx.ttlSeconds, ...publicKeys(ctx.key) });
  },
};
