/**
 * Simulated CI runners. GitHub: a composite action's `run` steps in bash as the runner
 * runs them (`bash --noprofile --norc -eo pipefail`), with its environment files
 * (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH), `${{ inputs.* }}`, `${{ steps.*.outputs.* }}`
 * and `${{ github.action_path }}` evaluated; any other expression fails the run, so the
 * action cannot depend on something this simulation does not provide. GitLab: a hidden
 * job's `before_script` lines in one bash, with the job's variables in the environment.
 */

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";

export interface StepResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CompositeRun {
  /** Exit code of the first failing step, or 0. */
  code: number;
  log: string;
  /** The action's outputs (its `outputs:` values evaluated). */
  outputs: Record<string, string>;
  /** What the steps appended to GITHUB_ENV and GITHUB_PATH. */
  githubEnv: Record<string, string>;
  githubPath: string[];
}

/** Reads `key=value` lines and `key<<DELIM` blocks, as the runner reads GITHUB_OUTPUT and GITHUB_ENV. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) body.push(lines[i]!);
      out[heredoc[1]!] = body.join("\n");
    } else if (line.includes("=")) {
      out[line.slice(0, line.indexOf("="))] = line.slice(line.indexOf("=") + 1);
    }
  }
  return out;
}

async function bash(script: string, env: Record<string, string>, args: string[] = ["--noprofile", "--norc", "-eo", "pipefail"]): Promise<StepResult> {
  const p = Bun.spawn(["bash", ...args, "-c", script], { env, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), 120_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Runs the composite action at `actionYml` with `inputs` in a job whose environment is `env` (RUNNER_TEMP etc. are set here). */
export async function runComposite(actionYml: string, inputs: Record<string, string>, env: Record<string, string>, work: string): Promise<CompositeRun> {
  const action = parseYaml(readFileSync(actionYml, "utf8")) as {
    inputs: Record<string, { default?: string; required?: boolean }>;
    outputs: Record<string, { value: string }>;
    runs: { using: string; steps: { id?: string; shell: string; env?: Record<string, string>; run: string }[] };
  };
  if (action.runs.using !== "composite") throw new Error("not a composite action");
  const given: Record<string, string> = {};
  for (const [name, spec] of Object.entries(action.inputs)) {
    const v = inputs[name] ?? spec.default;
    if (v === undefined && spec.required) throw new Error(`input ${name} is required`);
    given[name] = v ?? "";
  }
  for (const name of Object.keys(inputs)) if (!(name in action.inputs)) throw new Error(`unknown input ${name}`);
  const stepOutputs: Record<string, Record<string, string>> = {};
  const evaluate = (s: string) =>
    s.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, expr: string) => {
      let m = /^inputs\.([\w-]+)$/.exec(expr);
      if (m) return given[m[1]!] ?? "";
      m = /^steps\.([\w-]+)\.outputs\.([\w-]+)$/.exec(expr);
      if (m) return stepOutputs[m[1]!]?.[m[2]!] ?? "";
      if (expr === "github.action_path") return dirname(actionYml);
      throw new Error(`the simulated runner does not evaluate \${{ ${expr} }}`);
    });
  const runnerTemp = join(work, "runner-temp");
  mkdirSync(runnerTemp, { recursive: true });
  const files = { env: join(work, "github-env"), path: join(work, "github-path") };
  writeFileSync(files.env, "");
  writeFileSync(files.path, "");
  let log = "";
  let code = 0;
  for (const [i, step] of action.runs.steps.entries()) {
    if (step.shell !== "bash") throw new Error(`step ${i}: shell ${step.shell} is not simulated`);
    const output = join(work, `github-output-${i}`);
    writeFileSync(output, "");
    const path = readFileSync(files.path, "utf8").split("\n").filter(Boolean).reverse();
    const stepEnv: Record<string, string> = {
      ...env,
      ...parseEnvFile(readFileSync(files.env, "utf8")),
      PATH: [...path, env.PATH ?? "/usr/bin:/bin"].join(":"),
      RUNNER_TEMP: runnerTemp,
      GITHUB_ACTION_PATH: dirname(actionYml),
      GITHUB_OUTPUT: output,
      GITHUB_ENV: files.env,
      GITHUB_PATH: files.path,
      ...Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, evaluate(String(v))])),
    };
    const r = await bash(step.run, stepEnv);
    log += `--- step ${step.id ?? i}: exit ${r.code}\n${r.stdout}${r.stderr}`;
    if (step.id) stepOutputs[step.id] = parseEnvFile(readFileSync(output, "utf8"));
    if (r.code !== 0) {
      code = r.code;
      break;
    }
  }
  const outputs = Object.fromEntries(Object.entries(action.outputs).map(([k, o]) => [k, evaluate(o.value)]));
  return {
    code,
    log,
    outputs,
    githubEnv: parseEnvFile(readFileSync(files.env, "utf8")),
    githubPath: readFileSync(files.path, "utf8").split("\n").filter(Boolean),
  };
}

/**
 * Runs hidden job `job` of a GitLab CI template: its `before_script` then `script` lines
 * in one bash, as the runner does, with the template's variables overridden by `variables`
 * and the job's predefined variables in `env`. Returns what the last line printed too.
 */
export async function runGitlabJob(template: string, job: string, variables: Record<string, string>, env: Record<string, string>, script: string[]): Promise<StepResult> {
  const doc = parseYaml(readFileSync(template, "utf8")) as Record<string, { variables?: Record<string, string>; before_script: string[] }>;
  const j = doc[job];
  if (!j) throw new Error(`no job ${job} in ${template}`);
  const lines = [...j.before_script, ...script];
  return bash(lines.join("\n"), { ...env, ...(j.variables ?? {}), ...variables }, ["--noprofile", "--norc", "-e"]);
}
