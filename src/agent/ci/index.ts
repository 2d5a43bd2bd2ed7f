/**
 * CI join methods, agent side: GitHub Actions, GitLab CI, CircleCI (builtins.ts
 * registers them).
 */

export { githubJoin } from "./github.ts";
export { gitlabJoin } from "./gitlab.ts";
export { circleciJoin } from "./circleci.ts";
