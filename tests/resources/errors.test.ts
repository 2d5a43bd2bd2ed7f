// Table-driven: each bad resource file yields exactly this message at this line.

import { describe, expect, test } from "bun:test";
import { AppError, formatError } from "../../src/lib/errors.ts";
import { parseResource, parseResources } from "../../src/resources/index.ts";
import { errorCases, failure, type ErrorCase } from "../_support/cases.ts";


const ROLE = (spec: string, version = "v6") => `kind: role\nversion: ${version}\nmetadata:\n  name: machine-id-kube-role\nspec:\n${spec}`;
const TOKEN = (spec: string, name = "example-bot") => `kind: token\nversion: v2\nmetadata:\n  name: ${name}\nspec:\n  roles: [Bot]\n  bot_name: example\n${spec}`;
const BOT = (spec: string) => `kind: bot\nversion: v1\nmetadata:\n  name: example\nspec:\n${spec}`;


const cases: ErrorCase[] = [
  {
    name: "misspelt role field suggests the real one",
    text: ROLE("  allow:\n    logns: [root]\n"),
    message: `Unknown field "spec.allow.logns" in role "machine-id-kube-role": did you mean "logins"?`,
    line: 7,
    column: 5,
    field: "spec.allow.logns",
  },
  {
    name: "a plural dropped is still suggested",
    text: ROLE("  allow:\n    login: [root]\n"),
    message: `Unknown field "spec.allow.login" in role "machine-id-kube-role": did you mean "logins"?`,
    line: 7,
  },
  {
    name: "an unknown field with no close name gets no suggestion",
    text: ROLE("  allow:\n    rules: []\n"),
    message: `Unknown field "spec.allow.rules" in role "machine-id-kube-role"`,
    line: 7,
  },
  {
    name: "transposed letters at the top level",
    text: "kind: bot\nversion: v1\nmetdaata:\n  name: x\nspec: {}\n",
    message: `Unknown field "metdaata" in bot: did you mean "metadata"?`,
    line: 3,
  },
  {
    name: "unknown join method lists the allowed ones",
    text: TOKEN("  join_method: tokn\n"),
    message: `Invalid value "tokn" for spec.join_method in token "example-bot": allowed values are "token", "bound_keypair", "kubernetes", "github", "gitlab", "circleci"`,
    line: 8,
    column: 16,
    field: "spec.join_method",
  },
  {
    name: "a string where a list of strings belongs",
    text: ROLE("  allow:\n    logins: root\n"),
    message: `Invalid value "root" for spec.allow.logins in role "machine-id-kube-role": expected a list of strings`,
    line: 7,
    column: 13,
  },
  {
    name: "a number inside a list of strings",
    text: ROLE("  allow:\n    logins:\n      - root\n      - 42\n"),
    message: `Invalid value 42 for spec.allow.logins[1] in role "machine-id-kube-role": expected a string`,
    line: 9,
    column: 9,
    field: "spec.allow.logins[1]",
  },
  {
    name: "a mapping where a string belongs",
    text: ROLE("  allow:\n    kubernetes_groups:\n      - {name: x}\n"),
    message: `Invalid value for spec.allow.kubernetes_groups[0] in role "machine-id-kube-role": expected a string, got a mapping`,
    line: 8,
  },
  {
    name: "label values are a string or a list of strings",
    text: ROLE("  allow:\n    kubernetes_labels:\n      env: {a: b}\n"),
    message: `Invalid value for spec.allow.kubernetes_labels.env in role "machine-id-kube-role": expected a string or a list of strings, got a mapping`,
    line: 8,
  },
  {
    name: "a number inside a list of label values",
    text: ROLE("  allow:\n    kubernetes_labels:\n      env: [prod, 7]\n"),
    message: `Invalid value 7 for spec.allow.kubernetes_labels.env[1] in role "machine-id-kube-role": expected a string`,
    line: 8,
  },
  {
    name: "the wildcard label takes only the wildcard value",
    text: ROLE("  allow:\n    kubernetes_labels:\n      '*': prod\n"),
    message: `Invalid value "prod" for spec.allow.kubernetes_labels["*"] in role "machine-id-kube-role": the wildcard label "*" only takes the value "*"`,
    line: 8,
  },
  {
    name: "a broken regular expression in a label value",
    text: ROLE("  allow:\n    node_labels:\n      env: '^prod-[0-9$'\n"),
    message: `Invalid value "^prod-[0-9$" for spec.allow.node_labels.env in role "machine-id-kube-role": invalid regular expression: missing terminating ] for character class`,
    line: 8,
  },
  {
    name: "v6 roles reach pods only",
    text: ROLE("  allow:\n    kubernetes_resources:\n      - kind: deployment\n        namespace: '*'\n        name: '*'\n"),
    message: `Invalid value "deployment" for spec.allow.kubernetes_resources[0].kind in role "machine-id-kube-role": role version v6 allows only "pod" (use version v7 for other kinds)`,
    line: 8,
    column: 15,
  },
  {
    name: "verbs need v7",
    text: ROLE("  allow:\n    kubernetes_resources:\n      - kind: pod\n        namespace: '*'\n        name: '*'\n        verbs: [get]\n"),
    message: `Unexpected field "spec.allow.kubernetes_resources[0].verbs" in role "machine-id-kube-role": needs role version v7`,
    line: 11,
  },
  {
    name: "v5 has no kubernetes_resources",
    text: ROLE("  deny:\n    kubernetes_resources: []\n", "v5"),
    message: `Unexpected field "spec.deny.kubernetes_resources" in role "machine-id-kube-role": needs role version v6 or v7`,
    line: 7,
  },
  {
    name: "v7 verbs are checked",
    text: ROLE("  allow:\n    kubernetes_resources:\n      - {kind: pod, namespace: '*', name: '*', verbs: [get, exec, fly]}\n", "v7"),
    message: `Invalid value "fly" for spec.allow.kubernetes_resources[0].verbs[2] in role "machine-id-kube-role": allowed values are "*", "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "exec", "portforward"`,
    line: 8,
  },
  {
    name: "a resource rule without a name",
    text: ROLE("  allow:\n    kubernetes_resources:\n      - kind: pod\n        namespace: '*'\n"),
    message: `Missing required field "spec.allow.kubernetes_resources[0].name" in role "machine-id-kube-role"`,
    line: 8,
  },
  {
    name: "unsupported role version",
    text: ROLE("  allow: {}\n", "v8"),
    message: `Invalid value "v8" for version in role "machine-id-kube-role": allowed values are "v5", "v6", "v7"`,
    line: 2,
  },
  {
    name: "missing version names the allowed ones",
    text: "kind: bot\nmetadata:\n  name: x\nspec: {}\n",
    message: `Missing required field "version" in bot "x": expected "v1"`,
    line: 1,
  },
  {
    name: "bad role max_session_ttl",
    text: ROLE("  options:\n    max_session_ttl: 30 hours\n"),
    message: `Invalid duration "30 hours" for spec.options.max_session_ttl in role "machine-id-kube-role": expected a number and a unit such as "90s", "20m" or "1h30m"`,
    line: 7,
  },
  {
    name: "a duration of the wrong type",
    text: BOT("  max_session_ttl: [1h]\n"),
    message: `Invalid value for spec.max_session_ttl in bot "example": expected a duration such as "1h" or "30m", got a list`,
    line: 6,
  },
  {
    name: "bot max_session_ttl is capped at 7 days",
    text: BOT("  max_session_ttl: 200h\n"),
    message: `Invalid duration "200h" for spec.max_session_ttl in bot "example": must be at most 168h (7 days)`,
    line: 6,
    column: 20,
  },
  {
    name: "a zero max_session_ttl",
    text: BOT("  max_session_ttl: 0s\n"),
    message: `Invalid duration "0s" for spec.max_session_ttl in bot "example": must be longer than 0s`,
    line: 6,
  },
  {
    name: "bad RFC 3339 time (February 30th)",
    text: "kind: bot\nversion: v1\nmetadata:\n  name: example\n  expires: 2025-02-30T00:00:00Z\nspec: {}\n",
    message: `Invalid time "2025-02-30T00:00:00Z" for metadata.expires in bot "example": expected an RFC 3339 time such as "2025-06-30T12:00:00Z"`,
    line: 5,
    column: 12,
  },
  {
    name: "a date without a time is not RFC 3339",
    text: TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    recovery: {limit: 1}\n    rotate_after: 2025-06-30\n"),
    message: `Invalid time "2025-06-30" for spec.bound_keypair.rotate_after in token "example-bot": expected an RFC 3339 time such as "2025-06-30T12:00:00Z"`,
    line: 11,
  },
  {
    name: "bound keypair without recovery",
    text: TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    onboarding:\n      initial_public_key: ssh-ed25519 AAAAC3Nz\n"),
    message: `Missing required field "spec.bound_keypair.recovery" in token "example-bot"`,
    line: 9,
  },
  {
    name: "a negative recovery limit",
    text: TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    recovery:\n      limit: -1\n"),
    message: `Invalid value -1 for spec.bound_keypair.recovery.limit in token "example-bot": must be at least 0`,
    line: 11,
  },
  {
    name: "a fractional recovery limit",
    text: TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    recovery:\n      limit: 1.5\n"),
    message: `Invalid value 1.5 for spec.bound_keypair.recovery.limit in token "example-bot": expected an integer`,
    line: 11,
  },
  {
    name: "unknown recovery mode",
    text: TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    recovery:\n      limit: 0\n      mode: lax\n"),
    message: `Invalid value "lax" for spec.bound_keypair.recovery.mode in token "example-bot": allowed values are "standard", "relaxed", "insecure"`,
    line: 12,
  },
  {
    name: "bound_keypair join without its sub-spec",
    text: TOKEN("  join_method: bound_keypair\n"),
    message: `Missing required field "spec.bound_keypair" in token "example-bot": required when spec.join_method is "bound_keypair"`,
    line: 5,
  },
  {
    name: "a sub-spec for another join method",
    text: TOKEN("  join_method: kubernetes\n  kubernetes:\n    allow: [{service_account: 'a:b'}]\n  bound_keypair:\n    recovery: {limit: 0}\n"),
    message: `Unexpected field "spec.bound_keypair" in token "example-bot": only allowed when spec.join_method is "bound_keypair"`,
    line: 11,
  },
  {
    name: "static_jwks type without the JWKS",
    text: TOKEN("  join_method: kubernetes\n  kubernetes:\n    type: static_jwks\n    allow: [{service_account: 'a:b'}]\n"),
    message: `Missing required field "spec.kubernetes.static_jwks" in token "example-bot": required when spec.kubernetes.type is "static_jwks"`,
    line: 9,
  },
  {
    name: "a JWKS that is JSON but not a key set",
    text: TOKEN(`  join_method: kubernetes\n  kubernetes:\n    type: static_jwks\n    static_jwks:\n      jwks: '{"kty": "RSA"}'\n    allow: [{service_account: 'a:b'}]\n`),
    message: `Invalid value "{\\"kty\\": \\"RSA\\"}" for spec.kubernetes.static_jwks.jwks in token "example-bot": expected a JWKS: a JSON object with a "keys" list`,
    line: 12,
  },
  {
    name: "a service account without a namespace",
    text: TOKEN("  join_method: kubernetes\n  kubernetes:\n    allow:\n      - service_account: tbot\n"),
    message: `Invalid value "tbot" for spec.kubernetes.allow[0].service_account in token "example-bot": expected "namespace:name", such as "default:tbot"`,
    line: 11,
  },
  {
    name: "an empty allow list",
    text: TOKEN("  join_method: kubernetes\n  kubernetes:\n    allow: []\n"),
    message: `Invalid value for spec.kubernetes.allow in token "example-bot": must not be empty`,
    line: 10,
  },
  {
    name: "an initial public key of the wrong shape",
    text: TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    onboarding:\n      initial_public_key: not-a-key\n    recovery: {limit: 0}\n"),
    message: `Invalid public key "not-a-key" for spec.bound_keypair.onboarding.initial_public_key in token "example-bot": expected an SSH public key line such as "ssh-ed25519 AAAA..." or a PEM "PUBLIC KEY" block`,
    line: 11,
  },
  {
    name: "tokens join bots only",
    text: "kind: token\nversion: v2\nmetadata:\n  name: example-bot\nspec:\n  roles: [Node]\n  bot_name: example\n  join_method: kubernetes\n  kubernetes:\n    allow: [{service_account: 'a:b'}]\n",
    message: `Invalid value "Node" for spec.roles[0] in token "example-bot": only "Bot" is supported: machine-id tokens join bots`,
    line: 6,
  },
  {
    name: "missing bot_name",
    text: "kind: token\nversion: v2\nmetadata:\n  name: example-bot\nspec:\n  roles: [Bot]\n  join_method: kubernetes\n  kubernetes:\n    allow: [{service_account: 'a:b'}]\n",
    message: `Missing required field "spec.bot_name" in token "example-bot"`,
    line: 5,
  },
  {
    name: "a short secret token name is refused without being echoed",
    text: TOKEN("  join_method: token\n", "hunter2-secret"),
    message: `Invalid name for metadata.name in token "hunt...": the name of a "token" join token is its secret and must be at least 16 characters long`,
    line: 4,
  },
  {
    name: "token names may not contain spaces",
    text: TOKEN("  join_method: kubernetes\n  kubernetes:\n    allow: [{service_account: 'a:b'}]\n", '"two words"'),
    message: `Invalid name "two words" for metadata.name in token "two words": expected printable characters without spaces or "/"`,
    line: 4,
  },
  {
    name: "resource names follow the DNS-like rule",
    text: "kind: role\nversion: v7\nmetadata:\n  name: Admins\nspec: {}\n",
    message: `Invalid name "Admins" for metadata.name in role "Admins": expected lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit`,
    line: 4,
  },
  {
    name: "a bot's role list uses resource names",
    text: BOT("  roles: [ok, 'Not OK']\n"),
    message: `Invalid name "Not OK" for spec.roles[1] in bot "example": expected lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit`,
    line: 6,
  },
  {
    name: "missing spec",
    text: "kind: role\nversion: v7\nmetadata:\n  name: r\n",
    message: `Missing required field "spec" in role "r"`,
    line: 1,
  },
  {
    name: "unknown kind",
    text: "kind: user\nversion: v2\n",
    message: `Invalid value "user" for kind in resource: allowed values are "role", "bot", "token"`,
    line: 1,
    column: 7,
  },
  {
    name: "missing kind",
    text: "version: v2\nmetadata:\n  name: x\n",
    message: `Missing required field "kind" in resource: allowed values are "role", "bot", "token"`,
    line: 1,
  },
  {
    name: "a document that is not a mapping",
    text: "just a string\n",
    message: `Invalid resource: expected a mapping, got a string`,
    line: 1,
  },
  {
    name: "YAML syntax: a value containing ': '",
    text: "kind: role\nversion: v7\nmetadata:\n  name: r\n  description: note: this breaks\nspec: {}\n",
    message: `Invalid YAML: unexpected ":" (a plain value cannot contain ": "; quote it, or start the nested mapping on its own line)`,
    line: 5,
    column: 16,
  },
  {
    name: "YAML syntax: tabs",
    text: "kind: role\nversion: v7\nmetadata:\n\tname: r\n",
    message: `Invalid YAML: tabs are not allowed as indentation (use spaces)`,
    line: 4,
    column: 1,
  },
  {
    name: "YAML syntax: duplicate key",
    text: "kind: role\nversion: v7\nkind: bot\n",
    message: `Invalid YAML: duplicate key "kind"`,
    line: 3,
    column: 1,
  },
  {
    name: "YAML syntax: unclosed quote",
    text: "kind: role\nversion: 'v7\n",
    message: `Invalid YAML: missing closing quote`,
    line: 3,
  },
  {
    name: "YAML syntax: an alias to nothing",
    text: "kind: role\nversion: *v\n",
    message: `Invalid YAML: unresolved alias "*v": define the anchor "&v" before using it`,
    line: 1,
  },
  {
    name: "the third document of three is invalid: its line is reported",
    text: `${BOT("  roles: []\n")}---\n${ROLE("  allow: {}\n")}---\nkind: bot\nversion: v1\nmetadata:\n  name: other\nspec:\n  rolse: []\n`,
    message: `Unknown field "spec.rolse" in bot "other": did you mean "roles"?`,
    line: 20,
  },
];

describe("parseResources errors", () => {
  errorCases(cases, "res.yaml", parseResources);

  test("formatError() renders file:line:col before the message", () => {
    const e = failure(() => parseResources(cases[0]!.text, "res.yaml"));
    expect(formatError(e)).toBe(`res.yaml:7:5: ${cases[0]!.message}`);
  });
});

describe("error reporting", () => {
  test("every problem is listed in details, first one first", () => {
    const e = failure(() => parseResources(ROLE("  allow:\n    logins: [1]\n    logns: []\n  options:\n    max_session_ttl: forever\n"), "r.yaml"));
    const errors = e.details!.errors as { message: string; line: number }[];
    expect(errors.map((x) => x.line)).toEqual([7, 8, 10]);
    expect(errors[1]!.message).toBe(`Unknown field "spec.allow.logns" in role "machine-id-kube-role": did you mean "logins"?`);
    expect(e.message).toBe(errors[0]!.message);
  });

  test("all-or-nothing: a file whose third document is invalid yields no resources", () => {
    let out: unknown;
    expect(() => {
      out = parseResources(`${BOT("  roles: []\n")}---\n${BOT("  roles: []\n")}---\nkind: bot\n`, "x.yaml");
    }).toThrow(AppError);
    expect(out).toBeUndefined();
  });

  test("an empty file has no resources", () => {
    const e = failure(() => parseResources("# nothing here\n", "empty.yaml"));
    expect(e.message).toBe(`No resources found in "empty.yaml"`);
  });

  test("a secret join token is masked in every message about it", () => {
    const e = failure(() => parseResources(TOKEN("  join_method: token\n  bogus: 1\n", "abcd123-insecure-do-not-use-this"), "t.yaml"));
    expect(e.message).toBe(`Unknown field "spec.bogus" in token "abcd..."`);
    expect(JSON.stringify(e.details)).not.toContain("insecure-do-not-use-this");
  });

  test("registration secrets are never echoed", () => {
    const e = failure(() =>
      parseResources(TOKEN("  join_method: bound_keypair\n  bound_keypair:\n    onboarding:\n      registration_secret: ''\n    recovery: {limit: 0}\n"), "t.yaml"),
    );
    expect(e.message).toBe(`Invalid value for spec.bound_keypair.onboarding.registration_secret in token "example-bot": must not be empty`);
  });

  test("parseResource reports the same messages without positions", () => {
    const e = failure(() => parseResource({ kind: "role", version: "v6", metadata: { name: "r" }, spec: { allow: { logns: [] } } }));
    expect(e.message).toBe(`Unknown field "spec.allow.logns" in role "r": did you mean "logins"?`);
    expect(e.position).toBeUndefined();
    expect(e.field).toBe("spec.allow.logns");
  });

  test("parseResource with a kind refuses another kind", () => {
    const e = failure(() => parseResource({ kind: "bot", version: "v1", metadata: { name: "b" }, spec: {} }, "role"));
    expect(e.message).toBe(`Invalid value "bot" for kind in resource: expected "role"`);
  });

  test("JSON text gets positions too", () => {
    const e = failure(() => parseResources(`[\n  {"kind": "bot", "version": "v1",\n   "metadata": {"name": "b"},\n   "spec": {"roles": "x"}}\n]`, "r.json"));
    expect(e.message).toBe(`Invalid value "x" for spec.roles in bot "b": expected a list of strings`);
    expect(e.position).toEqual({ file: "r.json", line: 4, column: 22 });
  });
});
