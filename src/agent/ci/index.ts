/**
 * CI join methods, agent side: each registers itself with the join registry when
 * imported (GitHub Actions, GitLab CI, CircleCI).
 */

import "./github.ts";
import "./gitlab.ts";
import "./circleci.ts";

export { githubJoin, requestGithubIdToken, REQUEST_URL_ENV, REQUEST_TOKEN_ENV } from "./github.ts";
export { gitlabJoin, DEFAULT_GITLAB_TOKEN_ENV } from "./gitlab.ts";
export { circleciJoin, CIRCLECI_TOKEN_ENVS } from "./circleci.ts";
