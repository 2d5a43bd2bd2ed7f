/** The raw HTTP/1.1 client now lives in tests/_support/http1.ts (the tests use it too). */
export * from "../tests/_support/http1.ts";
