/**
 * Values built on first use, for module-level zod schemas: each command loads every
 * schema module it imports, but uses few of the schemas (a oneshot reads one config
 * and three answers). Building them all at load cost the oneshot ~13 ms of its ~55 ms
 * CPU (bench/RESULTS.md, "The oneshot").
 */

const BUILT = Symbol("lazy.built");

/**
 * The object a {@link lazy} stand-in forwards to (built now if it was not), or `value`
 * itself when it is no stand-in: for lookups keyed by identity (a WeakMap, a registry)
 * that may be handed either.
 */
export function unwrapLazy<T>(value: T): T {
  return typeof value === "object" && value !== null ? (((value as Record<symbol, unknown>)[BUILT] as T | undefined) ?? value) : value;
}

/**
 * Returns a stand-in for `build()`'s object that calls `build` once, on the first access
 * of any property, and forwards everything to what it built. The stand-in has the built
 * object's type, so a lazy schema is used, extended, nested and inferred (`z.infer<typeof
 * X>`) like the schema itself; `build` may use other lazy values (nothing is built before
 * the modules have loaded, so their order does not matter).
 *
 * A Proxy rather than zod's own `z.lazy()`: that builds a schema instance of its own at
 * load and has no `.shape` or `.extend()` until it is parsed.
 */
export function lazy<T extends object>(build: () => T): T {
  let built: T | undefined;
  const real = (): T => (built ??= build());
  // The target only anchors the Proxy; every trap answers from the built object. Methods are
  // bound to it, so what they make (`X.optional()`, `X.extend()`) holds the built object, not
  // the stand-in. Descriptors are reported configurable, because a Proxy may not claim a
  // non-configurable property its (empty) target lacks.
  return new Proxy({} as T, {
    get: (_, key) => {
      if (key === BUILT) return real();
      const value: unknown = Reflect.get(real(), key);
      return typeof value === "function" ? value.bind(real()) : value;
    },
    set: (_, key, value) => Reflect.set(real(), key, value),
    has: (_, key) => Reflect.has(real(), key),
    deleteProperty: (_, key) => Reflect.deleteProperty(real(), key),
    defineProperty: (_, key, desc) => Reflect.defineProperty(real(), key, desc),
    ownKeys: () => Reflect.ownKeys(real()),
    getOwnPropertyDescriptor: (_, key) => {
      const desc = Reflect.getOwnPropertyDescriptor(real(), key);
      return desc && { ...desc, configurable: true };
    },
    getPrototypeOf: () => Reflect.getPrototypeOf(real()),
  });
}
