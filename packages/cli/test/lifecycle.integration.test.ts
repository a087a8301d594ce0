// What a user sees of running bottles: `ps` lists them, `stop` removes them, and Ctrl-C (SIGINT) or
// SIGTERM to claude-bottle leaves no bottle behind, and the project's warm gateway (kept on purpose,
// listed by `ps`, removed by `stop`) serving no run.
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { runsServedBy, warmGatewayOf } from "@claude-bottle/container-engine/testing";
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

/**
 * Containers of this test's workspace (bottles, and gateways of a run's own; not the project's warm
 * gateway, kept on purpose), the volume of bottle `name`, and the runs the warm gateway still serves.
 */
async function leftovers(name: string): Promise<string[]> {
  const filter = `label=dev.claude-bottle.workspace=${workspace}`;
  const containers = await execa("docker", ["ps", "-a", "--format", "{{.Names}}", "--filter", filter]);
  const gateway = await warmGatewayOf(workspace);
  const runs = gateway ? (await runsServedBy(gateway)).map((run) => `run ${run} in ${gateway}`) : [];
  const volumes = await execa("docker", [
    "volume",
    "ls",
    "--format",
    "{{.Name}}",
    "--filter",
    `name=${name}`,
  ]);
  return [
    ...containers.stdout.split("\n").filter((container) => container !== gateway),
    ...volumes.stdout.split("\n"),
    ...runs,
  ].filter(Boolean);
}

async function waitForBottle(): Promise<string> {
  for (let i = 0; i < 240; i++) {
    const { stdout } = await claudeBottle(["ps", "--json"]);
    const mine = (JSON.parse(stdout) as { name: string; workspace: string; kept?: boolean }[]).find(
      (b) => b.workspace === workspace && !b.kept,
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
  ] as const)(
    "%s to claude-bottle removes the bottle and ends its run in the project's gateway, exit %i",
    async (signal, code) => {
      const session = claudeBottle(["shell", "-q", "--", "sleep", "120"]);
      const name = await waitForBottle();
      // The bottle's command does not wait for its run to be attached to the gateway: wait for it.
      let left: string[] = [];
      for (let i = 0; i < 120 && left.filter((entry) => entry.startsWith("run ")).length === 0; i++) {
        left = await leftovers(name);
        await sleep(250);
      }
      expect(left).toContain(name);
      expect(left.filter((entry) => entry.startsWith("run "))).toHaveLength(1);
      session.kill(signal);
      const { exitCode } = await session;
      expect(exitCode).toBe(code);
      expect(await leftovers(name)).toEqual([]);
    },
  );

  it("after a claude-bottle killed outright, ps still lists the bottle and stop removes all it left", async () => {
    const session = claudeBottle(["shell", "-q", "--", "sleep", "120"]);
    const name = await waitForBottle();
    session.kill("SIGKILL");
    // (The session's output pipes stay open while the orphaned bottle runs, so it is awaited last.)
    const { stdout } = await claudeBottle(["ps", "--json"]);
    expect((JSON.parse(stdout) as { name: string }[]).map((bottle) => bottle.name)).toContain(name);
    const stopped = await claudeBottle(["stop", name]);
    expect(stopped).toMatchObject({ exitCode: 0, stdout: `stopped ${name}` });
    expect(await leftovers(name)).toEqual([]);
    expect((await session).signal).toBe("SIGKILL");
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
    expect(await leftovers(name)).toEqual([]);

    const again = await claudeBottle(["stop", name]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`no running bottle is named ${name}`);
  });
});
