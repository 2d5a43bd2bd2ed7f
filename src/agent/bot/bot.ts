/**
 * The bot's renewable identity over time: join when there is none (or it can no
 * longer be renewed), renew it otherwise, and store every new identity durably
 * before using it. Also issues the role certificates outputs are made of.
 */

import { generateKeyPair, keyId, parsePrivateKey, privateKeyToPem, type KeyPair } from "../../crypto/index.ts";
import type { Clock } from "../../lib/clock.ts";
import { AppError, expired, isAppError } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log.ts";
import type { OnboardingConfig } from "../../config/index.ts";
import { AuthClient, type BotCertsRequest, type BotCertsResponse, type ClientTLS, type KubernetesClusterInfo } from "../../protocol/index.ts";
import { tokenFingerprint } from "../../resources/index.ts";
import { joinMethod } from "./join.ts";
import { identityTLS, makeIdentity, publicKeys, type BotIdentity } from "./identity.ts";
import type { BotStore } from "./store.ts";
import { resolveTrust } from "./trust.ts";

/** The settings the bot reads from the agent config; replaced as a whole on reload. */
export interface BotSettings {
  /** `host:port` of the auth service (auth_server or proxy_server). */
  addr: string;
  onboarding: OnboardingConfig;
  insecure: boolean;
  credentialTtlMs: number;
}

export interface BotOptions {
  settings: BotSettings;
  store: BotStore;
  clock: Clock;
  log: Logger;
  /** Builds the HTTPS client; tests may shorten timeouts. */
  client?: (addr: string, tls: ClientTLS) => AuthClient;
}

/** What `refresh()` did. */
export type RefreshOutcome = "joined" | "renewed";

/** Key type of every agent key: ECDSA P-256, which OpenSSH and OpenSSL both read from one PEM file. */
export const AGENT_KEY_ALGORITHM = "ecdsa-p256" as const;

/**
 * Holds the current identity. Outputs ask for certificates concurrently with each other
 * and with renewal, so the two are ordered here: a renewal waits for the certificate
 * requests in flight, and requests made meanwhile wait for the renewal — a request
 * made with an identity the service has since renewed would look like a stolen copy
 * and lock the instance. Renewals run one at a time.
 */
export class Bot {
  settings: BotSettings;
  private identityValue: BotIdentity | undefined;
  private loaded = false;
  private readonly store: BotStore;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly makeClient: (addr: string, tls: ClientTLS) => AuthClient;
  /** The join or renewal in progress: certificate requests wait for it. */
  private refreshing: Promise<RefreshOutcome> | undefined;
  /** Certificate requests in flight: a renewal waits for them. */
  private readonly requests = new Set<Promise<unknown>>();

  constructor(options: BotOptions) {
    this.settings = options.settings;
    this.store = options.store;
    this.clock = options.clock;
    this.log = options.log;
    this.makeClient = options.client ?? ((addr, tls) => new AuthClient({ addr, tls }));
  }

  /** The current identity, if the bot has one. */
  get identity(): BotIdentity | undefined {
    return this.identityValue;
  }

  private get ttlSeconds(): number {
    return Math.max(1, Math.round(this.settings.credentialTtlMs / 1000));
  }

  /** Loads the stored identity once (later calls keep the one in memory). */
  async load(): Promise<BotIdentity | undefined> {
    if (!this.loaded) {
      await this.store.init();
      this.identityValue = await this.store.loadIdentity();
      this.loaded = true;
      const id = this.identityValue;
      if (id) this.log.info("Loaded bot identity", { bot: id.botName, instance: id.instanceId, generation: id.generation, expires: id.validBefore });
    }
    return this.identityValue;
  }

  /** Joins or renews, whichever the stored identity and the config call for; see the class comment on ordering. */
  async refresh(): Promise<RefreshOutcome> {
    while (this.refreshing) await this.refreshing.catch(() => {});
    const run = (async () => {
      await Promise.allSettled([...this.requests]);
      return this.refreshNow();
    })();
    this.refreshing = run;
    try {
      return await run;
    } finally {
      this.refreshing = undefined;
    }
  }

  private async refreshNow(): Promise<RefreshOutcome> {
    const id = await this.load();
    const { onboarding } = this.settings;
    const configured = onboarding.token ? tokenFingerprint(onboarding.token) : undefined;
    if (!id) return this.join();
    // A token other than the one this instance joined with is a request to join anew.
    if (onboarding.joinMethod === "token" && configured && id.tokenFingerprint && configured !== id.tokenFingerprint) {
      this.log.info("The configured join token is not the one this identity was created with: joining again", { instance: id.instanceId });
      return this.join();
    }
    const now = this.clock.now();
    if (id.validBefore.getTime() <= now.getTime()) {
      if (joinMethod(onboarding.joinMethod).rejoinable) return this.join();
      throw this.expiredError(id);
    }
    try {
      await this.renew(id);
      return "renewed";
    } catch (e) {
      // The service's clock may be ahead of ours: it says expired before we do.
      if (isAppError(e, "EXPIRED")) {
        if (!joinMethod(onboarding.joinMethod).rejoinable) throw this.expiredError(id, e);
        this.log.info("The auth service says the bot identity expired: joining again", { instance: id.instanceId, join_method: onboarding.joinMethod });
        return this.join();
      }
      // The instance is gone (deleted, or the service's database was restored from
      // before it joined): a method that can rejoin does; a one-time token cannot.
      if (isAppError(e, "NOT_FOUND") && joinMethod(onboarding.joinMethod).rejoinable) {
        this.log.warn("The auth service does not know this bot instance: joining again", { instance: id.instanceId, join_method: onboarding.joinMethod });
        return this.join();
      }
      throw e;
    }
  }

  private expiredError(id: BotIdentity, cause?: unknown): AppError {
    return expired(
      `The bot identity in ${this.store.description} expired at ${id.validBefore.toISOString()} and join method "${id.joinMethod}" cannot renew an expired identity: a new join token is needed ("ctl bots add" or "ctl tokens add"); pass it with --token or set onboarding.token`,
      cause === undefined ? {} : { cause },
    );
  }

  /** Joins with the configured method after verifying the auth service; nothing secret is sent before. */
  async join(): Promise<RefreshOutcome> {
    const { addr, onboarding } = this.settings;
    const method = joinMethod(onboarding.joinMethod);
    const trusted = await resolveTrust(addr, { caPins: onboarding.caPins, insecure: this.settings.insecure, ...(onboarding.caPath ? { caPath: onboarding.caPath } : {}) }, this.log);
    const key = generateKeyPair(AGENT_KEY_ALGORITHM);
    const res = await method.join({
      client: this.makeClient(addr, { caCertsPem: trusted }),
      onboarding,
      key,
      ttlSeconds: this.ttlSeconds,
      store: this.store,
      log: this.log,
      clock: this.clock,
    });
    const fp = onboarding.joinMethod === "token" && onboarding.token ? tokenFingerprint(onboarding.token) : undefined;
    const id = makeIdentity(privateKeyToPem(key.privateKey), res.certs, {
      authServer: addr,
      joinMethod: method.name,
      ...(fp ? { tokenFingerprint: fp } : {}),
    });
    // Durable before use: the token is spent now, this identity is all the bot has.
    await this.store.saveIdentity(id);
    this.identityValue = id;
    this.loaded = true;
    this.log.info("Joined", { bot: id.botName, instance: id.instanceId, join_method: method.name, expires: id.validBefore });
    return "joined";
  }

  /**
   * Renews `id`. The next key is stored before the request: if the answer is lost
   * (crash, network), the retry asks for the same key with the same certificate, which
   * the service accepts once; a fresh key would look like a copied identity.
   */
  private async renew(id: BotIdentity): Promise<void> {
    const current = parsePrivateKey(id.keyPem, "bot identity key");
    let next: KeyPair | undefined = await this.store.loadPendingKey();
    if (!next || keyId(next.publicKey) === keyId(current.publicKey)) {
      next = generateKeyPair(AGENT_KEY_ALGORITHM);
      await this.store.savePendingKey(next);
    }
    const client = this.makeClient(this.settings.addr, identityTLS(id));
    const res = await client.renew({ ttl_seconds: this.ttlSeconds, ...publicKeys(next) });
    const renewed = makeIdentity(privateKeyToPem(next.privateKey), res.certs, {
      authServer: this.settings.addr,
      joinMethod: id.joinMethod,
      ...(id.tokenFingerprint ? { tokenFingerprint: id.tokenFingerprint } : {}),
    });
    await this.store.saveIdentity(renewed);
    this.identityValue = renewed;
    this.log.info("Renewed bot identity", { bot: renewed.botName, instance: renewed.instanceId, generation: renewed.generation, expires: renewed.validBefore });
  }

  /** Asks for role certificates (for an output) with the current identity. */
  botCerts(req: BotCertsRequest): Promise<BotCertsResponse> {
    return this.withIdentity((client) => client.botCerts(req));
  }

  /** The Kubernetes clusters the bot's roles reach, asked with the current identity. */
  async kubernetesClusters(): Promise<KubernetesClusterInfo[]> {
    return (await this.withIdentity((client) => client.kubernetesClusters())).clusters;
  }

  /** One request with the current identity (after a renewal in progress), tracked so stopping waits for it. */
  private async withIdentity<T>(call: (client: AuthClient) => Promise<T>): Promise<T> {
    while (this.refreshing) await this.refreshing.catch(() => {});
    const id = this.identityValue;
    if (!id) throw new AppError("BAD_PARAMETER", "The bot has no identity yet: it must join before outputs can be written");
    const request = call(this.makeClient(this.settings.addr, identityTLS(id)));
    this.requests.add(request);
    try {
      return await request;
    } finally {
      this.requests.delete(request);
    }
  }
}
