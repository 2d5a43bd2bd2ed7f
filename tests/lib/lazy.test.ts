import { describe, expect, test } from "bun:test";
import * as z from "zod";
import { lazy, unwrapLazy } from "../../src/lib/lazy.ts";

describe("lazy", () => {
  test("builds on first use, once", () => {
    let builds = 0;
    const schema = lazy(() => {
      builds++;
      return z.object({ a: z.string() });
    });
    expect(builds).toBe(0);
    expect(schema.safeParse({ a: "x" }).success).toBe(true);
    expect(schema.safeParse({ a: 1 }).success).toBe(false);
    expect(Object.keys(schema.shape)).toEqual(["a"]);
    expect(builds).toBe(1);
  });

  test("what its methods make holds the built schema, and it nests and infers like one", () => {
    const inner = lazy(() => z.string().min(2));
    const optional = inner.optional();
    expect((optional as unknown as { _zod: { def: { innerType: unknown } } })._zod.def.innerType).toBe(unwrapLazy(inner));
    const outer = lazy(() => z.object({ name: inner, list: z.array(inner) }));
    const ok: z.infer<typeof outer> = outer.parse({ name: "ab", list: ["cd"] });
    expect(ok).toEqual({ name: "ab", list: ["cd"] });
    expect(outer.safeParse({ name: "a", list: [] }).error?.issues[0]?.path).toEqual(["name"]);
    expect(outer.extend({ more: z.number() }).parse({ name: "ab", list: [], more: 1 })).toEqual({ name: "ab", list: [], more: 1 });
    expect(outer instanceof z.ZodObject).toBe(true);
  });

  test("unwrapLazy returns other values as they are", () => {
    const plain = z.string();
    expect(unwrapLazy(plain)).toBe(plain);
    expect(unwrapLazy(3)).toBe(3);
    expect(unwrapLazy(null)).toBe(null);
  });
});
