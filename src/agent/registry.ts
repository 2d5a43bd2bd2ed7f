/**
 * The one registry shape behind destination types, output types and join methods:
 * implementations register themselves by name, the agent looks them up, and a name
 * this build lacks is a clear NOT_IMPLEMENTED instead of a switch's default branch.
 */

import { AppError } from "../lib/errors.ts";

/** Named implementations of one kind of thing. */
export class Registry<V> {
  private readonly entries = new Map<string, V>();

  /** @param what how messages name an entry, e.g. `Output type`. */
  constructor(private readonly what: string) {}

  /** Registers `value` under `name`, replacing any earlier one; returns the undo (for tests). */
  register(name: string, value: V): () => void {
    const previous = this.entries.get(name);
    this.entries.set(name, value);
    return () => (previous === undefined ? this.entries.delete(name) : this.entries.set(name, previous));
  }

  /** The entry called `name`; NOT_IMPLEMENTED naming the available ones when there is none. */
  get(name: string): V {
    const v = this.entries.get(name);
    if (v === undefined) {
      const known = [...this.entries.keys()].map((n) => `"${n}"`).join(", ");
      throw new AppError("NOT_IMPLEMENTED", `${this.what} "${name}" is not available in this build: use one of ${known}`);
    }
    return v;
  }
}
