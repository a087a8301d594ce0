// Two named bottles at once in one project: each runs, `ps` lists both with the project, a name
// in use is refused before anything starts, and `stop NAME` ends that one only, leaving nothing
// of it behind (container, gateway, volume). A name held by a container that is not claude-bottle's
// is refused too, and that container left alone.
//
// `stop --all` is not run here: it stops every claude-bottle bottle on the engine, and the engine
// is shared with other test runs. Its reach across backends is covered in src/commands/ps.test.ts.
import { randomBytes } from "node:crypto";
import { access, chown, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;
/** The project's slug: random, so that no other run on this engine has bottles of the same names. */
const slug = `para-${randomBytes(3).toString("hex")}`;
const fullName = (name: string) => `claude-bottle-${slug}-${name}`;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-para-"));
  workspace = join(root, slug);
  await mkdir(workspace);
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
});
afterAll(async () => {
  // Whatever a failed run left: only this test's own bottles, by their full names.
  for (const name of ["a", "b"]) await claudeBottle(["stop", fullName(name)]);
  await rm(root, { recursive: true, force: true });
});

function claudeBottle(args: string[]) {
  return runClaudeBottle(args, { cwd: workspace, dataDir: join(root, "data") });
}

/** Containers (bottles and gateways) and volumes this test's bottles could have left. */
/** Containers and volumes of bottles `names` (not the project's warm gateway, kept on purpose). */
async function leftovers(names: string[]): Promise<string[]> {
  const filter = `label=dev.claude-bottle.workspace=${workspace}`;
  const containers = await execa("docker", [
    "ps",
    "-a",
    "--format",
    "{{.Names}}",
    "--filter",
    filter,
    "--filter",
    "label=dev.claude-bottle.role=bottle",
  ]);
  const volumes = await execa("docker", ["volume", "ls", "--format", "{{.Name}}"]);
  const ours = volumes.stdout
    .split("\n")
    .filter((volume) => names.some((n) => volume.startsWith(fullName(n))));
  return [...containers.stdout.split("\n").filter(Boolean), ...ours];
}

type Listed = { name: string; workspace: string; backend: string; kept?: boolean };
/** The project's bottles `ps --json` lists (not what it keeps between runs: its warm gateway). */
async function listed(): Promise<Listed[]> {
  const { stdout } = await claudeBottle(["ps", "--json"]);
  return (JSON.parse(stdout) as Listed[]).filter((bottle) => bottle.workspace === workspace && !bottle.kept);
}

/** Until both bottles have run their command (each touches a file in the shared workspace). */
async function waitForStarts(files: string[]): Promise<void> {
  for (let i = 0; i < 480; i++) {
    const present = await Promise.all(
      files.map((f) =>
        access(join(workspace, f)).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (present.every(Boolean)) return;
    await sleep(250);
  }
  throw new Error(`the bottles never started: ${files.join(", ")} missing in ${await readdir(workspace)}`);
}

describe("named bottles in one project", () => {
  it("run side by side, are listed with the project, and stop one by one", async () => {
    const shell = (name: string) =>
      claudeBottle(["shell", "-q", "--name", name, "--", "sh", "-c", `touch ${name}-started; sleep 60`]);
    const a = shell("a");
    const b = shell("b");
    await waitForStarts(["a-started", "b-started"]);

    const both = await listed();
    expect(both.map((bottle) => bottle.name).sort()).toEqual([fullName("a"), fullName("b")]);
    expect(both.every((bottle) => bottle.backend === "docker")).toBe(true);
    const table = await claudeBottle(["ps"]);
    expect(table.stdout).toMatch(
      new RegExp(`^${fullName("a")}\\s+docker\\s+${workspace}\\s+\\d+[smhd]\\s`, "m"),
    );

    // A name in use: one line, exit 2, and the bottle holding it goes on.
    const again = await claudeBottle(["shell", "-q", "--name", "a", "--", "true"]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toBe(
      `claude-bottle: the bottle name ${fullName("a")} is in use by a running docker bottle of ${workspace}; pick another --name, or stop that bottle (\`claude-bottle ps\`, \`claude-bottle stop\`)`,
    );

    // `stop a`, the short name, in the project: a ends, b runs on.
    const stopA = await claudeBottle(["stop", "a"]);
    expect(stopA).toMatchObject({ exitCode: 0, stdout: `stopped ${fullName("a")}` });
    expect((await a).exitCode).not.toBe(0);
    expect((await listed()).map((bottle) => bottle.name)).toEqual([fullName("b")]);
    const afterA = await leftovers(["a", "b"]);
    expect(afterA.filter((left) => left.startsWith(fullName("a")))).toEqual([]);
    expect(afterA).toEqual([fullName("b")]);

    const stopB = await claudeBottle(["stop", fullName("b")]);
    expect(stopB).toMatchObject({ exitCode: 0, stdout: `stopped ${fullName("b")}` });
    expect((await b).exitCode).not.toBe(0);
    expect(await listed()).toEqual([]);
    expect(await leftovers(["a", "b"])).toEqual([]);
  });

  it("refuses a name held by a container that is not claude-bottle's, and leaves that container alone", async () => {
    const foreign = fullName("c");
    await execa("docker", [
      "create",
      "--name",
      foreign,
      "--label",
      "test=claude-bottle-parallel",
      "claude-bottle-test-agent:latest",
      "true",
    ]);
    try {
      const refused = await claudeBottle(["shell", "-q", "--name", "c", "--", "true"]);
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toBe(
        `claude-bottle: the bottle name ${foreign} is in use by the Docker container ${foreign}; pick another --name, or stop that bottle (\`claude-bottle ps\`, \`claude-bottle stop\`)`,
      );
      const still = await execa("docker", ["container", "inspect", "--format", "{{.Name}}", foreign]);
      expect(still.stdout).toBe(`/${foreign}`);
    } finally {
      await execa("docker", ["rm", "--force", foreign]);
    }
  });
});
