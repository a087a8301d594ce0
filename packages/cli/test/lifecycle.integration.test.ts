// What a user sees of running bottles: `ps` lists them, `stop` removes them, and Ctrl-C (SIGINT) or
// SIGTERM to claude-bottle leaves no container and no network behind.
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-life-"));
  workspace = join(root, "project");
  await mkdir(workspace);
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
});
afterAll(() => rm(root, { recursive: true, force: true }));

function claudeBottle(args: string[]) {
  return runClaudeBottle(args, { cwd: workspace, dataDir: join(root, "data") });
}

/** Bottles (containers) and networks that belong to this test's workspace. */
async function leftovers(): Promise<string[]> {
  const filter = `label=dev.claude-bottle.workspace=${workspace}`;
  const containers = await execa("docker", ["ps", "-a", "--format", "{{.Names}}", "--filter", filter]);
  const networks = await execa("docker", ["network", "ls", "--format", "{{.Name}}", "--filter", filter]);
  return [...containers.stdout.split("\n"), ...networks.stdout.split("\n")].filter(Boolean);
}

async function waitForBottle(): Promise<string> {
  for (let i = 0; i < 240; i++) {
    const { stdout } = await claudeBottle(["ps", "--json"]);
    const mine = (JSON.parse(stdout) as { name: string; workspace: string }[]).find(
      (b) => b.workspace === workspace,
    );
    if (mine) return mine.name;
    await sleep(250);
  }
  throw new Error("the bottle never showed up in `claude-bottle ps`");
}

describe("running bottles", () => {
  it.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)("%s to claude-bottle removes the bottle and its network, exit %i", async (signal, code) => {
    const session = claudeBottle(["shell", "-q", "--", "sleep", "120"]);
    await waitForBottle();
    session.kill(signal);
    const { exitCode } = await session;
    expect(exitCode).toBe(code);
    expect(await leftovers()).toEqual([]);
  });

  it("ps lists a running bottle and stop removes it", async () => {
    const session = claudeBottle(["shell", "-q", "--", "sleep", "120"]);
    const name = await waitForBottle();
    expect(name).toMatch(/^claude-bottle-project-[0-9a-f]{6}$/);
    const table = await claudeBottle(["ps"]);
    expect(table.stdout).toMatch(new RegExp(`^${name}\\s+docker\\s+${workspace}\\s`, "m"));

    const stopped = await claudeBottle(["stop", name]);
    expect(stopped).toMatchObject({ exitCode: 0, stdout: `stopped ${name}` });
    const { exitCode } = await session;
    expect(exitCode).not.toBe(0);
    expect(await leftovers()).toEqual([]);

    const again = await claudeBottle(["stop", name]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`no running bottle is named ${name}`);
  });
});
