/**
 * The agent's own storage: the renewable identity, the key of a renewal in flight,
 * and join-method state (the bound-keypair join state), all through a Destination.
 */

import { parsePrivateKey, privateKeyToPem, type KeyPair } from "../../crypto/index.ts";
import { AppError, isAppError } from "../../lib/errors.ts";
import type { Destination } from "../destinations/index.ts";
import { decodeIdentity, encodeIdentity, type BotIdentity } from "./identity.ts";

const IDENTITY_FILE = "identity.json";
const PENDING_KEY_FILE = "pending-key";

/** Reads and writes the bot's state; every write is atomic and durable before it returns. */
export class BotStore {
  constructor(readonly destination: Destination) {}

  get description(): string {
    return this.destination.description;
  }

  /** Creates the storage if needed and checks it is safe (0700 directory, no symlinks…). */
  async init(): Promise<void> {
    try {
      await this.destination.init();
      await this.destination.verify();
    } catch (e) {
      // A user who is not root meets the default /var/lib/machine-id here first: say
      // which setting moves it, rather than only "permission denied".
      const errno = isAppError(e) ? e.details?.errno : undefined;
      if (isAppError(e) && (errno === "EACCES" || errno === "EPERM")) {
        throw new AppError(e.code, `${e.message}: the bot's storage must be writable by this user; pass --storage DIR (or set storage: in the config), e.g. --storage ~/.local/state/machine-id`, {
          cause: e,
          details: { errno, reason: "storage_not_writable" },
        });
      }
      throw e;
    }
  }

  async loadIdentity(): Promise<BotIdentity | undefined> {
    const text = await this.destination.read(IDENTITY_FILE);
    return text === undefined ? undefined : decodeIdentity(text, this.description);
  }

  async saveIdentity(id: BotIdentity): Promise<void> {
    await this.destination.write(IDENTITY_FILE, encodeIdentity(id));
  }

  /**
   * The key of a renewal whose answer may have been lost. Kept until a renewal with
   * it succeeds, so a retry asks for the same key: the auth service accepts the
   * previous certificate again only for that key.
   */
  async loadPendingKey(): Promise<KeyPair | undefined> {
    const text = await this.destination.read(PENDING_KEY_FILE);
    return text === undefined || text.trim() === "" ? undefined : parsePrivateKey(text, `pending renewal key in ${this.description}`);
  }

  async savePendingKey(key: KeyPair): Promise<void> {
    await this.destination.write(PENDING_KEY_FILE, privateKeyToPem(key.privateKey));
  }

  /** Join-method state (opaque text), e.g. the bound-keypair join state document. */
  async readState(name: string): Promise<string | undefined> {
    return this.destination.read(name);
  }

  async writeState(name: string, data: string): Promise<void> {
    await this.destination.write(name, data);
  }
}
