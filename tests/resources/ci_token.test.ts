// Tokens of the CI join methods (github, gitlab, circleci): each bad field yields
// exactly this message at this line.

import { describe } from "bun:test";
import { parseResources } from "../../src/resources/index.ts";
import { errorCases, type ErrorCase } from "./_helpers.ts";

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
    name: "a gitlab rule needs a project, namespace or subject",
    text: TOKEN("  join_method: gitlab\n  gitlab:\n    allow:\n      - ref_protected: true\n"),
    message: `Invalid value for spec.gitlab.allow[0] in token "ci-token": each allow rule must name at least one of "sub", "project_path", "namespace_path", or it would admit any repository on the service`,
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
