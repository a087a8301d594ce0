// `run` starts building the image while it still sets up the bottle. What the setup says comes
// first, before the build's progress; and when the setup refuses the run, the user must see only
// the refusal, at once, and nothing of the build may be left running: the build here takes minutes
// (a RUN step that sleeps), so a run that waited for it, or a build left behind, shows.
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { integrationEnvironment, removeWarmGatewayOf } from "@claude-bottle/container-engine/testing";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bin, runClaudeBottle, testEnvironment } from "./claude-bottle-process.js";

const nonce = randomBytes(6).toString("hex");
const tag = `claude-bottle-test-slow-${nonce}:latest`;
let root: string;
let workspace: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-build-setup-"));
  workspace = join(root, "project");
  await mkdir(workspace);
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
  const dockerfile = join(root, "slow.Dockerfile");
  await writeFile(dockerfile, `FROM ${integrationEnvironment().baseImage}\nRUN echo ${nonce} && sleep 300\n`);
  await mkdir(join(root, "config", "claude-bottle"), { recursive: true });
  await writeFile(
    join(root, "config", "claude-bottle", "config.json"),
    JSON.stringify({ image: { dockerfile } }),
  );
});

afterAll(async () => {
  // The runs that went ahead left their project's warm gateway (kept on purpose between runs).
  for (const project of [workspace, join(root, "project-git")]) await removeWarmGatewayOf(project);
  await execa("docker", ["image", "rm", "--force", tag], { reject: false });
  await rm(root, { recursive: true, force: true });
});

/** Processes on this machine whose command line holds the nonce: the build's CLI, or its RUN step. */
async function processesOfTheBuild(): Promise<string[]> {
  const { stdout } = await execa("ps", ["-eo", "args"]);
  return stdout.split("\n").filter((line) => line.includes(nonce) && !line.includes("ps -eo"));
}

describe("a run refused while its image builds", () => {
  it("prints only the refusal, at once, and stops the build", async () => {
    const started = performance.now();
    const run = await execa("node", [bin, "run", "--", "-p", "hi"], {
      cwd: workspace,
      reject: false,
      stdin: "ignore",
      env: {
        ...testEnvironment(join(root, "data"), {
          CLAUDE_BOTTLE_IMAGE: tag,
          XDG_CONFIG_HOME: join(root, "config"),
          CLAUDE_BOTTLE_CREDENTIAL_STORE: "file",
        }),
        ANTHROPIC_API_KEY: undefined,
        ANTHROPIC_AUTH_TOKEN: undefined,
        CLAUDE_CODE_OAUTH_TOKEN: undefined,
      },
    });
    const seconds = (performance.now() - started) / 1000;
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stdout).toBe("");
    // No progress line of the build that was under way: the refusal alone.
    expect(run.stderr).toBe(
      "claude-bottle: no credential for Claude Code, and a headless run cannot log in; run `claude setup-token` then `claude-bottle login` (Claude subscription), `claude-bottle login` with an API key, or export ANTHROPIC_API_KEY",
    );
    expect(seconds).toBeLessThan(60);
    // The build is stopped, not left to run its five minutes: its CLI is gone at once, and the
    // engine ends the RUN step soon after the CLI has gone.
    let left = await processesOfTheBuild();
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await sleep(200);
      left = await processesOfTheBuild();
    }
    expect(left).toEqual([]);
    const image = await execa("docker", ["image", "inspect", tag], { reject: false });
    expect(image.exitCode).not.toBe(0);
  });

  it("a run that goes ahead says what the setup found before the build's progress", async () => {
    const xdg = join(root, "xdg-unprotected");
    await mkdir(join(xdg, "claude-bottle"), { recursive: true });
    const config = join(xdg, "claude-bottle", "config.json");
    await writeFile(config, JSON.stringify({ git: { protect: false } }));
    const run = await runClaudeBottle(["shell", "--", "true"], {
      cwd: workspace,
      dataDir: join(root, "data"),
      env: { XDG_CONFIG_HOME: xdg },
    });
    expect(run.exitCode, run.stderr).toBe(0);
    const lines = run.stderr.split("\n");
    const warning = lines.findIndex((line) =>
      line.startsWith(`claude-bottle: warning: git.protect is false (${config})`),
    );
    const building = lines.indexOf("claude-bottle: build agent image…");
    expect(warning, run.stderr).toBeGreaterThanOrEqual(0);
    expect(building, run.stderr).toBeGreaterThan(warning);
    expect(lines, run.stderr).toContainEqual(
      expect.stringMatching(/^claude-bottle: build agent image: done in \d+\.\ds$/),
    );
  });

  it("a change the user makes while the image builds is not reported as the bottle's", async () => {
    // The fingerprint of git's files is taken while the image builds: after a build that took long
    // it is taken again, so that what the user did meanwhile is not blamed on the bottle.
    const project = join(root, "project-git");
    await mkdir(project);
    await execa("git", ["init", "-q"], { cwd: project });
    if (process.getuid?.() === 0) await execa("chown", ["-R", "1001:1001", project]);
    const slow = randomBytes(6).toString("hex");
    const slowTag = `claude-bottle-test-slow-${slow}:latest`;
    const xdg = join(root, "xdg-slow");
    await mkdir(join(xdg, "claude-bottle"), { recursive: true });
    const dockerfile = join(root, "three-seconds.Dockerfile");
    await writeFile(dockerfile, `FROM ${integrationEnvironment().baseImage}\nRUN echo ${slow} && sleep 3\n`);
    await writeFile(join(xdg, "claude-bottle", "config.json"), JSON.stringify({ image: { dockerfile } }));
    try {
      const running = runClaudeBottle(["shell", "-q", "--", "true"], {
        cwd: project,
        dataDir: join(root, "data"),
        env: { XDG_CONFIG_HOME: xdg, CLAUDE_BOTTLE_IMAGE: slowTag },
      });
      // Once the build's RUN step is under way, the user adds a hook on the host.
      const building = async () => {
        const { stdout } = await execa("ps", ["-eo", "args"]);
        return stdout.split("\n").some((line) => line.includes(`sleep 3`) && line.includes(slow));
      };
      for (let i = 0; i < 100 && !(await building()); i++) await sleep(100);
      expect(await building()).toBe(true);
      await writeFile(join(project, ".git", "hooks", "pre-commit"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      const run = await running;
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stderr).not.toContain("pre-commit");
    } finally {
      await execa("docker", ["image", "rm", "--force", slowTag], { reject: false });
    }
  });
});
