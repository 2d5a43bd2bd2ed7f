/**
 * CI join methods, agent side: each registers itself with the join registry when
 * imported (GitHub Actions, GitLab CI, CircleCI).
 */

import "./github.ts";
import "./gitlab.ts";
import "./circleci.ts";
