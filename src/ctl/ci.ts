/**
 * `ctl bots add NAME --join-method github|gitlab|circleci`: creates the bot and a CI join
 * token whose single allow rule is built from flags, then prints the token resource and
 * the CI configuration to paste (a GitHub workflow, a .gitlab-ci.yml job, a CircleCI job).
 */

import { Option, type Command } from "commander";
import { stringify } from "yaml";
import { badParameter } from "../lib/errors.ts";
import type { AuthClient } from "../protocol/index.ts";
import { CI_JOIN_METHODS, parseResource, serializeResources, type CiJoinMethod, type Resource } from "../resources/index.ts";

export const isCiJoinMethod = (m: string | undefined): m is CiJoinMethod => (CI_JOIN_METHODS as readonly string[]).includes(m ?? "");

/** Flag → allow-rule field, per method (the flags `bots add` gains). */
const RULE_FLAGS: Record<CiJoinMethod, [flag: string, field: string, help: string][]> = {
  github: [
    ["repository", "repository", "github: the repository allowed to join, owner/name"],
    ["repository-owner", "repository_owner", "github: an owner (organization or user) all of whose repositories may join"],
    ["workflow", "workflow", "github: only this workflow (its name)"],
    ["ref", "ref", "github: only this ref, e.g. refs/heads/main; gitlab: only this branch or tag (globs allowed)"],
    ["environment", "environment", "github, gitlab: only jobs in this deployment environment"],
    ["actor", "actor", "github: only runs triggered by this user"],
  ],
  gitlab: [
    ["project-path", "project_path", "gitlab: the project allowed to join, group/project (globs allowed)"],
    ["namespace-path", "namespace_path", "gitlab: a group all of whose projects may join (globs allowed)"],
    ["ref", "ref", ""],
    ["environment", "environment", ""],
  ],
  circleci: [
    ["project-id", "project_id", "circleci: the project ID allowed to join"],
    ["context-id", "context_id", "circleci: only jobs using this context ID"],
  ],
};

/** Adds the CI flags to `bots add`. */
export function addCiOptions(cmd: Command): Command {
  const seen = new Set<string>();
  for (const [flag, , help] of Object.values(RULE_FLAGS).flat()) {
    if (seen.has(flag)) continue;
    seen.add(flag);
    cmd.option(`--${flag} <value>`, help);
  }
  cmd.option("--enterprise-server-host <host>", "github: a GitHub Enterprise Server host instead of github.com");
  cmd.option("--enterprise-slug <slug>", "github: the GitHub Enterprise Cloud slug its ID tokens' issuer names (include_enterprise_slug)");
  cmd.option("--gitlab-domain <host>", "gitlab: a self-managed GitLab host instead of gitlab.com");
  cmd.option("--organization-id <id>", "circleci: the organization ID (Organization Settings > Overview)");
  cmd.option("--ref-protected", "gitlab: only protected branches and tags");
  cmd.addOption(new Option("--token-name <name>", "name of the CI join token (default: NAME-METHOD)"));
  return cmd;
}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The token resource for `bot` from the flags; BAD_PARAMETER naming the missing flag. */
function ciToken(bot: string, method: CiJoinMethod, o: Record<string, string | boolean | undefined>): Resource {
  const rule: Record<string, string | boolean> = {};
  for (const [flag, field] of RULE_FLAGS[method]) {
    const v = o[camel(flag)];
    if (typeof v === "string" && v !== "") rule[field] = v;
  }
  if (method === "gitlab" && o.refProtected) rule.ref_protected = true;
  // the first two flags of each method scope the rule to a repository, project or owner
  const scoping = RULE_FLAGS[method].slice(0, 2);
  if (!scoping.some(([, field]) => rule[field] !== undefined)) {
    const flags = scoping.map(([flag]) => `--${flag}`).join(" or ");
    throw badParameter(`--join-method ${method} needs ${flags}: without one, any ${method === "circleci" ? "project of the organization" : "repository on the service"} could join`);
  }
  let spec: Record<string, unknown>;
  if (method === "github") {
    spec = {
      ...(o.enterpriseServerHost ? { enterprise_server_host: o.enterpriseServerHost } : {}),
      ...(o.enterpriseSlug ? { enterprise_slug: o.enterpriseSlug } : {}),
      allow: [rule],
    };
  }
  else if (method === "gitlab") spec = { ...(o.gitlabDomain ? { domain: o.gitlabDomain } : {}), allow: [rule] };
  else {
    if (typeof o.organizationId !== "string" || !o.organizationId) throw badParameter(`--join-method circleci needs --organization-id (Organization Settings > Overview in CircleCI)`);
    spec = { organization_id: o.organizationId, allow: [rule] };
  }
  const name = typeof o.tokenName === "string" && o.tokenName ? o.tokenName : `${bot}-${method}`;
  return parseResource({ kind: "token", version: "v2", metadata: { name }, spec: { roles: ["Bot"], join_method: method, bot_name: bot, [method]: spec } }, "token");
}

/** What to paste into the CI configuration to join with `token`. */
function ciSnippet(method: CiJoinMethod, token: string, addr: string, caPin: string, cluster: string): string {
  if (method === "github") {
    return stringify(
      {
        name: "deploy",
        on: { push: { branches: ["main"] } },
        jobs: {
          deploy: {
            "runs-on": "ubuntu-latest",
            permissions: { "id-token": "write", contents: "read" },
            steps: [
              { uses: "actions/checkout@v4" },
              { id: "machine-id", uses: "./.github/actions/machine-id", with: { "auth-server": addr, token, "ca-pin": caPin } },
              { run: 'ssh -F "${{ steps.machine-id.outputs.ssh-config }}" deploy@host.example.com uptime' },
            ],
          },
        },
      },
      { lineWidth: 0 },
    );
  }
  if (method === "gitlab") {
    return stringify(
      {
        include: [{ local: "ci/gitlab/machine-id.gitlab-ci.yml" }],
        deploy: {
          extends: ".machine-id",
          variables: { MACHINE_ID_AUTH_SERVER: addr, MACHINE_ID_TOKEN: token, MACHINE_ID_CA_PIN: caPin },
          id_tokens: { TBOT_GITLAB_JWT: { aud: cluster } },
          script: ['ssh -F "$MACHINE_ID_IDENTITY_DIR/ssh_config" deploy@host.example.com uptime'],
        },
      },
      { lineWidth: 0 },
    );
  }
  return stringify(
    {
      version: 2.1,
      jobs: {
        deploy: {
          docker: [{ image: "cimg/base:current" }],
          steps: [
            "checkout",
            { run: { name: "machine-id", command: `machine-id start --oneshot --join-method circleci --token ${token} --auth-server ${addr} --ca-pin ${caPin} --storage memory:// --destination-dir "$HOME/machine-id"` } },
            { run: 'ssh -F "$HOME/machine-id/ssh_config" deploy@host.example.com uptime' },
          ],
        },
      },
      workflows: { deploy: { jobs: [{ deploy: { context: ["<a context of the organization>"] } }] } },
    },
    { lineWidth: 0 },
  );
}

/** Creates the bot and its CI token in one request (neither when either is refused); returns what to print. */
export async function addCiBot(
  client: AuthClient,
  addr: string,
  b: { name: string; roles: string[]; logins?: string[] },
  method: CiJoinMethod,
  o: Record<string, string | boolean | undefined>,
  format: string,
): Promise<string> {
  const traits = b.logins ? { traits: [{ name: "logins", values: b.logins }] } : {};
  const bot = parseResource({ kind: "bot", version: "v1", metadata: { name: b.name }, spec: { roles: b.roles, ...traits } }, "bot");
  const token = ciToken(bot.metadata.name, method, o);
  await client.createResources([bot, token]);
  const ping = await client.ping();
  const caPin = ping.ca_pins[0] ?? "";
  if (format === "json") return JSON.stringify({ bot: bot.metadata.name, token: token.metadata.name, join_method: method, ca_pins: ping.ca_pins, token_resource: token }, null, 2);
  const where = { github: ".github/workflows/deploy.yml", gitlab: ".gitlab-ci.yml", circleci: ".circleci/config.yml" }[method];
  return [
    `Bot "${bot.metadata.name}" created with ${method} join token "${token.metadata.name}":`,
    "",
    serializeResources([token], "yaml").trimEnd(),
    "",
    `The token holds rules, not a secret: it does not expire, and jobs it admits join without any stored credential.`,
    `Edit its allow rules with "ctl get token/${token.metadata.name} --format yaml" and "ctl create --force -f FILE".`,
    "",
    `Add this to ${where} (docs/ci.md explains each line):`,
    "",
    ciSnippet(method, token.metadata.name, addr, caPin, ping.cluster_name).trimEnd(),
  ].join("\n");
}
