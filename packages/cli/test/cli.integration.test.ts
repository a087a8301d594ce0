// The built claude-bottle binary, as a user runs it, against the real Docker engine.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let project: string;

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), "cb-cli-it-"));
});
afterAll(() => rm(project, { recursive: true, force: true }));

function claudeBottle(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  return runClaudeBottle(args, {
    cwd: project,
    dataDir: join(project, ".data"),
    env: { CLAUDE_BOTTLE_CACHE_DIR: join(project, ".cache"), ...extraEnv },
  });
}

describe("claude-bottle binary", () => {
  it("exits 2 with one line for a bad flag, a bad config file and a bad environment variable", async () => {
    const flag = await claudeBottle(["prepare", "--no-such-flag"]);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toContain("unknown option '--no-such-flag'");

    await writeFile(
      join(project, "claude-bottle.config.json"),
      JSON.stringify({ network: { allow: ["bad host"] } }),
    );
    const config = await claudeBottle(["prepare"]);
    expect(config.exitCode).toBe(2);
    expect(config.stderr.trim()).toBe(
      `claude-bottle: ${join(project, "claude-bottle.config.json")}: network.allow.0: expected a host name, a *.domain wildcard, an IP address or a CIDR block`,
    );
    await rm(join(project, "claude-bottle.config.json"));

    const variable = await claudeBottle(["prepare"], { CLAUDE_BOTTLE_NETWORK: "everything" });
    expect(variable.exitCode).toBe(2);
    expect(variable.stderr).toMatch(/^claude-bottle: environment: CLAUDE_BOTTLE_NETWORK: /);
  });

  it("doctor finds the Docker engine", async () => {
    const { exitCode, stdout } = await claudeBottle(["doctor", "--json"]);
    expect(exitCode).toBe(0);
    const { checks } = JSON.parse(stdout);
    expect(checks[0]).toMatchObject({ backend: "docker", available: true, selected: true });
    expect(checks[0].version).toMatch(/^Docker Engine \d+\./);
  });

  it("doctor says how to fix an unreachable engine and exits 1", async () => {
    const { exitCode, stdout } = await claudeBottle(["doctor"], {
      DOCKER_HOST: "unix:///nonexistent/docker.sock",
    });
    expect(exitCode).toBe(1);
    expect(stdout).toMatch(
      /^FAIL docker \(selected\)\n {5}why: the Docker engine does not answer\n {5}fix: start Docker/m,
    );
  });

  it("prepare builds the agent image with plain progress lines on stderr and only JSON on stdout", async () => {
    const { exitCode, stdout, stderr } = await claudeBottle(["prepare", "--json"]);
    expect(exitCode).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.backend).toBe("docker");
    expect(result.prepared.imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(stderr).toMatch(/^claude-bottle: build agent image…$/m);
    expect(stderr).toMatch(/^claude-bottle: build agent image: done in \d+\.\ds$/m);
    // The build's steps, each once, between the two (the bundled Dockerfile's, whichever builder).
    const lines = stderr.split("\n");
    const steps = lines.slice(
      lines.indexOf("claude-bottle: build agent image…") + 1,
      lines.findIndex((line) => line.startsWith("claude-bottle: build agent image: done")),
    );
    expect(steps.length).toBeGreaterThanOrEqual(5);
    for (const step of steps) expect(step).toMatch(/^claude-bottle: {3}\S/);
    expect(steps).toContainEqual(expect.stringMatching(/^claude-bottle: {3}\[\d+\/\d+\] FROM /));
    expect(steps).toContainEqual(
      expect.stringMatching(
        /^claude-bottle: {3}\[\d+\/\d+\] RUN npm install --global .*@anthropic-ai\/claude-code@/,
      ),
    );
    expect(new Set(steps).size).toBe(steps.length);
  });

  it("prepare with claudeCode.version latest builds what the npm registry names; doctor shows it", async () => {
    const image = `claude-bottle-test-latest-${randomBytes(4).toString("hex")}:latest`;
    const env = { CLAUDE_BOTTLE_CLAUDE_CODE_VERSION: "latest", CLAUDE_BOTTLE_IMAGE: image };
    try {
      const prepare = await claudeBottle(["prepare", "--json"], env);
      expect(prepare.exitCode).toBe(0);
      const cache = JSON.parse(await readFile(join(project, ".cache", "claude-code-versions.json"), "utf8"));
      const entries = Object.entries(cache.entries) as [string, { version: string; resolvedAt: string }][];
      expect(entries).toHaveLength(1);
      const [key, { version, resolvedAt }] = entries[0]!;
      expect(key).toMatch(/@anthropic-ai\/claude-code@latest$/);
      const { stdout: label } = await execa("docker", [
        "image",
        "inspect",
        "--format",
        '{{ index .Config.Labels "dev.claude-bottle.claude-code-version" }}',
        image,
      ]);
      expect(label).toBe(version);

      const doctor = await claudeBottle(["doctor"], env);
      expect(doctor.stdout).toMatch(
        new RegExp(
          `^claude code: ${version.replace(/\./g, "\\.")} in ${image}; newest ${version.replace(/\./g, "\\.")} \\(latest as of ${resolvedAt}\\)$`,
          "m",
        ),
      );
    } finally {
      await execa("docker", ["image", "rm", image], { reject: false });
    }
  });

  it("prepare reports an unreachable engine in one line and exits 1", async () => {
    const { exitCode, stderr } = await claudeBottle(["prepare", "-q"], {
      DOCKER_HOST: "unix:///nonexistent/docker.sock",
    });
    expect(exitCode).toBe(1);
    expect(stderr.trim()).toBe(
      "claude-bottle: the Docker engine does not answer; start Docker (or point DOCKER_HOST at a running engine) and run again",
    );
  });
});
