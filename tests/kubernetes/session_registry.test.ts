// The registry of live Kubernetes sessions on its own: the caps in total and per bot
// instance, slots freed on release, and a lock ending exactly the sessions it covers.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeSessions } from "../../src/auth/kubernetes/index.ts";
import { ADMIN, startKubeAuth, type KubeAuth } from "./_auth.ts";

let auth: KubeAuth;
beforeAll(async () => {
  auth = await startKubeAuth();
  await auth.create("kind: role\nversion: v6\nmetadata: {name: r}\nspec: {allow: {}}\n");
  await auth.addBot("a", ["r"]);
  await auth.addBot("b", ["r"]);
});
afterAll(() => auth?.close());

describe("KubeSessions", () => {
  test("refuses upgrades past the total cap and past the per-instance cap; streams do not count; release frees a slot", () => {
    const reg = new KubeSessions(auth.running.ctx, { total: 3, perInstance: 2 });
    try {
      const s1 = reg.open({ bot: "a", instance: "i1" }, "upgrade", () => {});
      reg.open({ bot: "a", instance: "i1" }, "upgrade", () => {});
      expect(() => reg.open({ bot: "a", instance: "i1" }, "upgrade", () => {})).toThrow(`Too many Kubernetes sessions of bot instance "i1" (2)`);
      reg.open({ bot: "b", instance: "i2" }, "stream", () => {});
      reg.open({ bot: "b", instance: "i2" }, "upgrade", () => {});
      expect(() => reg.open({ bot: "b", instance: "i3" }, "upgrade", () => {})).toThrow("Too many Kubernetes sessions through the auth service (3)");
      expect(reg.count()).toBe(3);
      s1.release();
      expect(reg.count()).toBe(2);
      reg.open({ bot: "b", instance: "i3" }, "upgrade", () => {});
    } finally {
      reg.close();
    }
  });

  test("a lock ends the sessions it covers, once each, and no others", async () => {
    const reg = new KubeSessions(auth.running.ctx, { total: 10, perInstance: 10 }, 60_000);
    const ended: string[] = [];
    try {
      reg.open({ bot: "a", instance: "i1" }, "upgrade", (why, detail) => ended.push(`a/i1 ${why} ${detail}`));
      reg.open({ bot: "a", instance: "i2" }, "stream", (why, detail) => ended.push(`a/i2 ${why} ${detail}`));
      reg.open({ bot: "b", instance: "i3" }, "upgrade", (why) => ended.push(`b/i3 ${why}`));
      // made through the admin API of this process: checked at once, not at the next interval (60 s here)
      await auth.admin.lock({ bot: "a" }, ADMIN);
      while (ended.length < 2) await Bun.sleep(10);
      await reg.recheck();
      expect(ended.sort()).toEqual(["a/i1 locked bot/a", "a/i2 locked bot/a"]);
    } finally {
      reg.close();
    }
    expect(ended).toContain("b/i3 service_stopping");
  });
});
