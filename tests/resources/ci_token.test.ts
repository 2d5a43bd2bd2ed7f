// Tokens of the CI join methods (github, gitlab, circleci): each bad field yields
// exactly this message at this line.

import { describe, expect, test } from "bun:test";
import { github } from "../../src/auth/join/github.ts";
import { gitlab } from "../../src/auth/join/gitlab.ts";
import { parseResources } from "../../src/resources/index.ts";
import { errorCases, failure, type ErrorCase } from "../_support/cases.ts";

const TOKEN = (spec: string) => `kind: token\nversion: v2\nmetadata:\n  name: ci-token\nspec:\n  roles: [Bot]\n  bot_name: deployer\n${spec}`;

const cases: ErrorCase[] = [
  {
    name: "a github token needs its github section",
    text: TOKEN("  join_method: github\n"),
    message: `Missing required field "spec.github" in token "ci-token": required when spec.join_method is "github"`,
    line: 5,
  },
  {
    name: "a gitlab section on a github token is refused",
    text: TOKEN("  join_method: github\n  github:\n    allow: [{repository: a/b}]\n  gitlab:\n    allow: [{project_path: a/b}]\n"),
    message: `Unexpected field "spec.gitlab" in token "ci-token": only allowed when spec.join_method is "gitlab"`,
    line: 11,
  },
  {
    name: "a github rule that names no repository, owner or subject would admit every repository",
    text: TOKEN("  join_method: github\n  github:\n    allow:\n      - ref: refs/heads/main\n"),
    message: `Invalid value for spec.github.allow[0] in token "ci-token": each allow rule must name at least one of "sub", "repository", "repository_owner", or it would admit any repository on the service`,
    line: 11,
  },
  {
    name: "a misspelt rule field suggests the real one",
    text: TOKEN("  join_method: github\n  github:\n    allow:\n      - repositry: a/b\n"),
    message: `Unknown field "spec.github.allow[0].repositry" in token "ci-token": did you mean "repository"?`,
    line: 11,
  },
  {
    name: "the github allow list must not be empty",
    text: TOKEN("  join_method: github\n  github:\n    allow: []\n"),
    message: `Invalid value for spec.github.allow in token "ci-token": must not be empty`,
    line: 10,
  },
  {
    name: "enterprise_server_host is a host, not a URL",
    text: TOKEN("  join_method: github\n  github:\n    enterprise_server_host: https://ghes.example.com\n    allow: [{repository: a/b}]\n"),
    message: `Invalid value "https://ghes.example.com" for spec.github.enterprise_server_host in token "ci-token": expected a host name with an optional port, such as "ghes.example.com", without "https://" or a path`,
    line: 10,
  },
  {
    name: "enterprise_slug is a slug, not a URL or a name with capitals",
    text: TOKEN("  join_method: github\n  github:\n    enterprise_slug: https://github.com/enterprises/Octo\n    allow: [{repository: a/b}]\n"),
    message: `Invalid value "https://github.com/enterprises/Octo" for spec.github.enterprise_slug in token "ci-token": expected the enterprise's slug as in github.com/enterprises/<slug>, such as "octo-enterprise": lowercase letters, digits and "-"`,
    line: 10,
  },
  {
    name: "enterprise_slug and enterprise_server_host name different issuers",
    text: TOKEN("  join_method: github\n  github:\n    enterprise_server_host: ghes.example.com\n    enterprise_slug: octo-enterprise\n    allow: [{repository: a/b}]\n"),
    message: `Invalid value "octo-enterprise" for spec.github.enterprise_slug in token "ci-token": cannot be combined with enterprise_server_host: a slug names an enterprise on github.com; a GitHub Enterprise Server issues its own tokens`,
    line: 11,
  },
  {
    name: "a gitlab rule needs a project, namespace or subject",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - ref_protected: true\n"),
    message: `Invalid value for spec.gitlab.allow[0] in token "ci-token": each allow rule must name at least one of "sub", "project_path", "namespace_path", or it would admit any repository on the service`,
    line: 11,
  },
  {
    name: "a gitlab rule of wildcards only would admit every project on gitlab.com",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - namespace_path: '*'\n        project_path: '*'\n        sub: '*'\n"),
    message: `Invalid value "*" for spec.gitlab.allow[0].sub in token "ci-token": must start with "project_path:" and the group written out: a "*", "?" or "[" there also matches "/" and other groups' names, so any project on the service could join; name the group, such as "sub: project_path:my-group/my-project:ref_type:branch:ref:main"`,
    line: 13,
  },
  {
    name: "a gitlab project_path glob in the group would admit other groups (acme* matches acme-evil/x)",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - project_path: my-group/app\n      - project_path: acme*\n        ref: main\n"),
    message: `Invalid value "acme*" for spec.gitlab.allow[1].project_path in token "ci-token": must write out the group before the first "/": a "*", "?" or "[" there also matches "/" and other groups' names, so any project on the service could join; name the group, such as "project_path: my-group/*"`,
    line: 12,
  },
  {
    name: "a gitlab namespace_path glob in the group is refused",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - namespace_path: 'acm?/team'\n"),
    message: `Invalid value "acm?/team" for spec.gitlab.allow[0].namespace_path in token "ci-token": must write out the group before the first "/": a "*", "?" or "[" there also matches "/" and other groups' names, so any project on the service could join; name the group, such as "namespace_path: my-group" (or "my-group/*" for its subgroups)`,
    line: 11,
  },
  {
    name: "a gitlab sub glob in the group is refused",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - sub: 'project_path:*/app:ref_type:branch:ref:main'\n"),
    message: `Invalid value "project_path:*/app:ref_type:branch:ref:main" for spec.gitlab.allow[0].sub in token "ci-token": must start with "project_path:" and the group written out: a "*", "?" or "[" there also matches "/" and other groups' names, so any project on the service could join; name the group, such as "sub: project_path:my-group/my-project:ref_type:branch:ref:main"`,
    line: 11,
  },
  {
    name: "ref_protected is a boolean",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - project_path: a/b\n        ref_protected: yes-please\n"),
    message: `Invalid value "yes-please" for spec.gitlab.allow[0].ref_protected in token "ci-token": expected true or false`,
    line: 12,
  },
  {
    name: "static_jwks must be a JWKS",
    text: TOKEN(`  join_method: gitlab\n  gitlab:\n    static_jwks: '{"kty":"RSA"}'\n    allow: [{project_path: a/b}]\n`),
    message: `Invalid value "{\\"kty\\":\\"RSA\\"}" for spec.gitlab.static_jwks in token "ci-token": expected a JWKS: a JSON object with a non-empty "keys" list`,
    line: 10,
  },
  {
    name: "a circleci token needs the organization ID",
    text: TOKEN("  join_method: circleci\n  circleci:\n    allow: [{project_id: p}]\n"),
    message: `Missing required field "spec.circleci.organization_id" in token "ci-token"`,
    line: 9,
  },
  {
    name: "a circleci rule names a project or a context",
    text: TOKEN("  join_method: circleci\n  circleci:\n    organization_id: 9c1f3a2e\n    allow:\n      - {}\n"),
    message: `Invalid value for spec.circleci.allow[0] in token "ci-token": each allow rule must name at least one of "project_id", "context_id", or it would admit any project of the organization`,
    line: 12,
  },
];

describe("CI token errors", () => {
  errorCases(cases, "token.yaml", parseResources);
});

describe("CI allow rules that name an owner", () => {
  // a glob field scopes a rule once its group is written out; exact fields always do
  const accepted: [string, string][] = [
    ["gitlab", "{project_path: my-group/*}"],
    ["gitlab", "{project_path: my-group/my-project}"],
    ["gitlab", "{namespace_path: my-group}"],
    ["gitlab", "{namespace_path: my-group/*}"],
    ["gitlab", "{sub: 'project_path:my-group/*'}"],
    ["gitlab", "{sub: 'project_path:my-group/my-project:ref_type:branch:ref:*'}"],
    // one written-out field is enough, whatever the others say
    ["gitlab", "{project_path: '*', namespace_path: my-group}"],
    ["gitlab", "{sub: '*', project_path: my-group/*, ref: '*'}"],
    // github compares exactly: "*" is a literal name there, not a wildcard
    ["github", "{repository: octo-org/octo-repo}"],
    ["github", "{repository_owner: octo-org}"],
    ["github", "{sub: 'repo:octo-org/octo-repo:ref:refs/heads/main'}"],
  ];
  for (const [method, rule] of accepted) {
    test(`${method} ${rule}`, () => {
      expect(() => parseResources(TOKEN(`  join_method: ${method}\n  ${method}:\n    allow: [${rule}]\n`), "token.yaml")).not.toThrow();
    });
  }

  const refused: [string, string][] = [
    ["{project_path: '*'}", "project_path"],
    ["{project_path: '*/*'}", "project_path"],
    ["{project_path: 'my-group*/app'}", "project_path"],
    ["{project_path: '[a-z]cme/app'}", "project_path"],
    ["{project_path: /app}", "project_path"],
    ["{namespace_path: '*'}", "namespace_path"],
    ["{namespace_path: 'acme*'}", "namespace_path"],
    ["{sub: 'project_path:*'}", "sub"],
    ["{sub: '*project_path:my-group/app*'}", "sub"],
    ["{sub: 'project_path:acme*:ref_type:branch:ref:main'}", "sub"],
    ["{sub: 'project_path:acme?/app'}", "sub"],
    ["{project_path: '*', namespace_path: '*', ref: main}", "project_path"],
  ];
  for (const [rule, field] of refused) {
    test(`gitlab ${rule} is refused at ${field}`, () => {
      const e = failure(() => parseResources(TOKEN(`  join_method: gitlab\n  gitlab:\n    allow: [${rule}]\n`), "token.yaml"));
      expect(e.code).toBe("BAD_PARAMETER");
      expect(e.message).toContain(`spec.gitlab.allow[0].${field} in token "ci-token"`);
      expect(e.message).toContain("name the group");
    });
  }

  test("the glob fields checked here are the ones the gitlab table compares as globs", () => {
    const globs = Object.entries(gitlab.fields).filter(([, f]) => f.match === "glob").map(([name]) => name);
    // sub, project_path and namespace_path are the scoping ones; ref and ci_config_ref_uri scope nothing
    expect(globs).toEqual(["sub", "project_path", "namespace_path", "ref", "ci_config_ref_uri"]);
    expect(Object.values(github.fields).every((f) => f.match === "exact")).toBe(true);
  });
});

describe("the github issuer a token names", () => {
  const spec = (extra: string) => {
    const [token] = parseResources(TOKEN(`  join_method: github\n  github:\n${extra}    allow: [{repository: a/b}]\n`), "token.yaml");
    return github.spec(token as never);
  };
  test("github.com's, an enterprise's slug below it, or a GitHub Enterprise Server's", () => {
    expect(github.issuer(spec(""))).toBe("https://token.actions.githubusercontent.com");
    expect(github.issuer(spec("    enterprise_slug: octo-enterprise\n"))).toBe("https://token.actions.githubusercontent.com/octo-enterprise");
    expect(github.issuer(spec("    enterprise_server_host: ghes.example.com\n"))).toBe("https://ghes.example.com/_services/token");
  });
});
