/** The wire-level bot now lives in tests/_support/bot.ts (the tests use it too). */
export * from "../tests/_support/bot.ts";
