// The built claude-bottle with the smolmachines backend: real Docker engine, claude-bottle's own
// in-process registry, and the smolvm TEST DOUBLE from backend-smolmachines' fixtures on PATH (there
// is no KVM here).
import { chown, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDoubleImages } from "../../backend-smolmachines/test/fixtures/double-images.js";
import { runClaudeBottle } from "./claude-bottle-process.js";

const smolvmDouble = fileURLToPath(
  new URL("../../backend-smolmachines/test/fixtures/smolvm-double", import.meta.url),
);
let root: string;

/** A regular user's: the tests run as root, and smolmachines never runs the agent as root. */
const projectOwner = 4321;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-cli-smol-"));
  await mkdir(join(root, "project"));
  await chown(join(root, "project"), projectOwner, projectOwner);
  await mkdir(join(root, "smolvm-state"));
});
afterAll(async () => {
  // The root filesystem the double imported to boot the packed agent image (see the double).
  await removeDoubleImages(join(root, "smolvm-state"));
  await rm(root, { recursive: true, force: true });
});

function claudeBottle(args: string[], project = "project") {
  return runClaudeBottle(args, options(project));
}

function options(project = "project") {
  return {
    cwd: join(root, project),
    dataDir: join(root, "data"),
    env: {
      PATH: `${smolvmDouble}:${process.env.PATH}`,
      SMOLVM_DOUBLE_STATE: join(root, "smolvm-state"),
      CLAUDE_BOTTLE_BACKEND: "smolmachines",
      CLAUDE_BOTTLE_CACHE_DIR: join(root, "cache"),
      ANTHROPIC_BASE_URL: "http://127.0.0.1:9",
    },
  };
}

describe("claude-bottle with smolmachines (smolvm double)", () => {
  it("prepares with every step shown, hits the cache the second time, and lists it", async () => {
    const first = await claudeBottle(["prepare", "--json"]);
    expect(first.exitCode).toBe(0);
    for (const step of ["build agent image", "export image", "push to local registry", "pack with smolvm"]) {
      expect(first.stderr).toMatch(new RegExp(`^claude-bottle: ${step}: done in \\d+\\.\\ds$`, "m"));
    }
    const { prepared } = JSON.parse(first.stdout);
    expect(prepared.sidecar).toMatch(/\/smolmachines\/[0-9a-f]{16}\.smolmachine\.smolmachine$/);

    const second = await claudeBottle(["prepare", "--json"]);
    expect(second.exitCode).toBe(0);
    expect(second.stderr).toContain("build agent image: done");
    expect(second.stderr).not.toContain("export");
    expect(second.stderr).not.toContain("push");
    expect(JSON.parse(second.stdout).prepared.sidecar).toBe(prepared.sidecar);

    const listed = await claudeBottle(["cache", "ls", "--json"]);
    expect(listed.exitCode).toBe(0);
    const entries = JSON.parse(listed.stdout);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      backend: "smolmachines",
      imageRef: "claude-bottle-test-agent:latest",
      path: prepared.sidecar,
    });
    expect(entries[0].sizeBytes).toBeGreaterThan(0);

    const table = await claudeBottle(["cache", "ls"]);
    expect(table.stdout).toMatch(
      /^BACKEND\s+ID\s+IMAGE\s+SIZE\s+CREATED\s+LAST USED\nsmolmachines\s+[0-9a-f]{16}\s+claude-bottle-test-agent:latest\s/,
    );

    const kept = await claudeBottle(["cache", "prune", "--older-than", "1d", "--json"]);
    expect(JSON.parse(kept.stdout).removed).toEqual([]);
    const pruned = await claudeBottle(["cache", "prune", "--all", "--json"]);
    expect(pruned.exitCode).toBe(0);
    expect(JSON.parse(pruned.stdout).removed.map((e: { id: string }) => e.id)).toEqual([entries[0].id]);
    expect(JSON.parse((await claudeBottle(["cache", "ls", "--json"])).stdout)).toEqual([]);
  });

  it("runs a command in the machine and passes its exit code on", async () => {
    const { exitCode, stdout } = await claudeBottle([
      "shell",
      "-q",
      "--",
      "sh",
      "-c",
      "echo in-$(pwd); claude --version; exit 5",
    ]);
    expect(exitCode).toBe(5);
    // The machine boots the packed root filesystem (one flattened layer exported from the agent
    // image), and Claude Code runs in it.
    expect(stdout.split("\n")).toEqual([
      `in-${join(root, "project")}`,
      expect.stringMatching(/^\d+\.\d+\.\d+ \(Claude Code\)$/),
    ]);
  });

  it("says before the run that git files stay writable, and names the one the machine changed", async () => {
    const project = join(root, "git-project");
    await mkdir(project);
    await execa("git", ["init", "-q"], { cwd: project });
    await execa("chown", ["-R", `${projectOwner}:${projectOwner}`, project]);
    const { exitCode, stderr } = await claudeBottle(
      ["shell", "-q", "--", "sh", "-c", "git config core.fsmonitor 'touch /tmp/x'"],
      "git-project",
    );
    expect(exitCode, stderr).toBe(0);
    const lines = stderr.split("\n");
    const before = lines.findIndex((line) =>
      line.startsWith(
        "claude-bottle: warning: the smolmachines backend cannot keep .git/config, .git/hooks and .gitmodules read-only in the bottle",
      ),
    );
    const after = lines.findIndex((line) =>
      line.startsWith(
        `claude-bottle: warning: ${join(project, ".git", "config")} was changed while the bottle ran`,
      ),
    );
    expect(before, stderr).toBeGreaterThanOrEqual(0);
    expect(after, stderr).toBeGreaterThan(before);
  });

  it("ps lists a running VM bottle with its workspace, and stop ends it and its session", async () => {
    // A project of a regular user's (the tests run as root): the agent runs as its owner.
    const project = join(root, "owned-project");
    await mkdir(project);
    await chown(project, projectOwner, projectOwner);
    const session = runClaudeBottle(["shell", "-q", "--", "sh", "-c", "touch started; sleep 120"], {
      ...options(),
      cwd: project,
    });
    const started = join(project, "started");
    for (let i = 0; i < 600 && !(await stat(started).catch(() => undefined)); i++) await sleep(100);
    expect(await stat(started).catch(() => undefined)).toBeDefined();

    const listed = await claudeBottle(["ps", "--json"]);
    expect(listed.exitCode).toBe(0);
    const bottles = JSON.parse(listed.stdout) as { name: string; backend: string; workspace: string }[];
    const mine = bottles.filter((bottle) => bottle.backend === "smolmachines");
    expect(mine).toEqual([
      expect.objectContaining({
        workspace: project,
        name: expect.stringMatching(/^claude-bottle-/),
      }),
    ]);
    // Written by the agent as the project's owner, not as root.
    expect(await stat(started)).toMatchObject({ uid: 4321, gid: 4321 });

    const stopped = await claudeBottle(["stop", mine[0]!.name]);
    expect(stopped).toMatchObject({ exitCode: 0, stdout: `stopped ${mine[0]!.name}` });
    const ended = await session;
    expect(ended.exitCode).not.toBe(0);
    const after = JSON.parse((await claudeBottle(["ps", "--json"])).stdout) as { backend: string }[];
    expect(after.filter((bottle) => bottle.backend === "smolmachines")).toEqual([]);
  });

  it("prunes what is older than asked, or everything", async () => {
    const [entry] = JSON.parse((await claudeBottle(["cache", "ls", "--json"])).stdout);
    const kept = await claudeBottle(["cache", "prune", "--older-than", "1d", "--json"]);
    expect(JSON.parse(kept.stdout).removed).toEqual([]);
    const pruned = await claudeBottle(["cache", "prune", "--all", "--json"]);
    expect(pruned.exitCode).toBe(0);
    expect(JSON.parse(pruned.stdout).removed.map((e: { id: string }) => e.id)).toEqual([entry.id]);
    expect(JSON.parse((await claudeBottle(["cache", "ls", "--json"])).stdout)).toEqual([]);
  });
});
