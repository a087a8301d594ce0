// `ps` and `stop` across backends, in-process, with the example third-party backend (a test
// fixture that lists the bottles its options name) as the configured one. The built-in backends are
// kept unavailable (no engine at DOCKER_HOST, no smolvm binary), so `stop --all` here can never
// reach a real bottle on this machine; the Docker side is in test/parallel.integration.test.ts.
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { memoryIo } from "../../test/memory-io.js";
import { main } from "../main.js";
import { ageOf } from "./ps.js";

const fixtureModules = fileURLToPath(
  new URL("../../test/fixtures/third-party-project/node_modules", import.meta.url),
);
const noEngine = "unix:///nonexistent/claude-bottle-ps-test.sock";
let savedDockerHost: string | undefined;
let project: string;
let configDir: string;
let stoppedTo: string;

beforeAll(async () => {
  // The docker CLI this process runs reads DOCKER_HOST: point it at nothing, and make sure.
  savedDockerHost = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = noEngine;
  await expect(execa("docker", ["version", "--format", "{{.Server.Version}}"])).rejects.toThrow();
});
afterAll(() => {
  if (savedDockerHost === undefined) delete process.env.DOCKER_HOST;
  else process.env.DOCKER_HOST = savedDockerHost;
});
beforeEach(async () => {
  project = await mkdtemp(join(tmpdir(), "cb-ps-"));
  configDir = await mkdtemp(join(tmpdir(), "cb-ps-config-"));
  stoppedTo = join(project, "stopped.txt");
  await writeFile(stoppedTo, "");
  await symlink(fixtureModules, join(configDir, "node_modules"));
});
afterEach(async () => {
  await rm(project, { recursive: true, force: true });
  await rm(configDir, { recursive: true, force: true });
});

async function cli(argv: string[]) {
  const { io, output } = memoryIo({
    cwd: project,
    env: {
      CLAUDE_BOTTLE_DATA_DIR: join(project, ".data"),
      CLAUDE_BOTTLE_CACHE_DIR: join(project, ".cache"),
      CLAUDE_BOTTLE_CONFIG_DIR: configDir,
    },
  });
  const code = await main(argv, io);
  return { code, ...output };
}

const slug = () => basename(project).toLowerCase();
const started = new Date(Date.now() - 5 * 60_000).toISOString();

/** The example backend as the project's, with these bottles running; the project config trusted. */
async function withBottles(bottles: { name: string; workspace: string; bottle?: string }[], namesInUse = {}) {
  const example = "claude-bottle-backend-example";
  await writeFile(
    join(project, "claude-bottle.config.json"),
    JSON.stringify({
      backend: example,
      backends: {
        [example]: {
          stoppedTo,
          namesInUse,
          bottles: bottles.map((b) => ({ ...b, backend: "example", startedAt: started, status: "running" })),
        },
        smolmachines: { smolvm: join(project, "no-smolvm") },
      },
    }),
  );
  expect(await cli(["trust"])).toMatchObject({ code: 0 });
}
const stopped = async () => (await readFile(stoppedTo, "utf8")).split("\n").filter(Boolean);

describe("ageOf", () => {
  const now = new Date("2026-01-02T12:00:00Z");
  it.each([
    ["2026-01-02T11:59:59.500Z", "0s"],
    ["2026-01-02T11:59:15Z", "45s"],
    ["2026-01-02T11:48:00Z", "12m"],
    ["2026-01-02T09:00:00Z", "3h"],
    ["2025-12-31T11:00:00Z", "2d"],
    ["2026-01-02T12:00:10Z", "0s"],
    ["not a time", "?"],
  ])("%s is %s old", (startedAt, age) => {
    expect(ageOf(startedAt, now)).toBe(age);
  });
});

describe("ps and stop", () => {
  it("ps shows each bottle with its workspace and age, and all of them in --json", async () => {
    const other = join(tmpdir(), "elsewhere");
    await withBottles([
      { name: `claude-bottle-${slug()}-a`, workspace: project },
      { name: "claude-bottle-elsewhere-a", workspace: other },
    ]);
    const table = await cli(["ps"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME +BACKEND +WORKSPACE +AGE +STATUS$/);
    expect(lines[1]).toMatch(new RegExp(`^claude-bottle-${slug()}-a +example +${project} +5m +running$`));
    expect(lines[2]).toMatch(new RegExp(`^claude-bottle-elsewhere-a +example +${other} +5m +running$`));
    const json = JSON.parse((await cli(["ps", "--json"])).stdout);
    expect(json.map((b: { name: string; workspace: string }) => [b.name, b.workspace])).toEqual([
      [`claude-bottle-${slug()}-a`, project],
      ["claude-bottle-elsewhere-a", other],
    ]);
  });

  it("stop NAME takes the --name of this project's bottle, never another project's of that name", async () => {
    await withBottles([
      { name: `claude-bottle-${slug()}-a`, workspace: project },
      { name: `claude-bottle-${slug()}-b`, workspace: project },
      // Another project whose folder has the same name: same full name pattern, other workspace.
      { name: "claude-bottle-elsewhere-a", workspace: join(tmpdir(), "elsewhere") },
    ]);
    expect(await cli(["stop", "a"])).toMatchObject({
      code: 0,
      stdout: `stopped claude-bottle-${slug()}-a\n`,
    });
    expect(await stopped()).toEqual([`claude-bottle-${slug()}-a`]);
    // The full name as ps shows it works from anywhere.
    expect(await cli(["stop", "claude-bottle-elsewhere-a"])).toMatchObject({ code: 0 });
    expect(await stopped()).toEqual([`claude-bottle-${slug()}-a`, "claude-bottle-elsewhere-a"]);
  });

  it("goes by the name the run gave a bottle whose backend lists it longer (smolmachines' machines)", async () => {
    const machine = `claude-bottle-${slug()}-a-0123abcd`;
    await withBottles([{ name: machine, bottle: `claude-bottle-${slug()}-a`, workspace: project }]);
    const taken = await cli(["shell", "--name", "a", "--", "true"]);
    expect(taken.code).toBe(2);
    expect(taken.stderr).toContain(
      `the bottle name claude-bottle-${slug()}-a is in use by a running example bottle`,
    );
    expect(await cli(["stop", "a"])).toMatchObject({ code: 0, stdout: `stopped ${machine}\n` });
    expect(await stopped()).toEqual([machine]);
  });

  it("stop with an unknown name stops nothing else and exits 2 with one line", async () => {
    await withBottles([{ name: `claude-bottle-${slug()}-a`, workspace: project }]);
    const result = await cli(["stop", "nope"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      "claude-bottle: no running bottle is named nope; see `claude-bottle ps` (a short name given with --name is looked up in the current project)\n",
    );
    expect(await stopped()).toEqual([]);
  });

  it("stop --all stops every bottle the backends list, of every project", async () => {
    await withBottles([
      { name: `claude-bottle-${slug()}-a`, workspace: project },
      { name: "claude-bottle-elsewhere-x", workspace: join(tmpdir(), "elsewhere") },
    ]);
    const result = await cli(["stop", "--all"]);
    expect(result).toMatchObject({
      code: 0,
      stdout: `stopped claude-bottle-${slug()}-a\nstopped claude-bottle-elsewhere-x\n`,
    });
    expect(await stopped()).toEqual([`claude-bottle-${slug()}-a`, "claude-bottle-elsewhere-x"]);
  });
});

describe("run --name", () => {
  it("refuses a name a running bottle has, exit 2, before the run starts", async () => {
    await withBottles([{ name: `claude-bottle-${slug()}-a`, workspace: project }]);
    const result = await cli(["shell", "--name", "a", "--", "true"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `claude-bottle: the bottle name claude-bottle-${slug()}-a is in use by a running example bottle of ${project}; pick another --name, or stop that bottle (\`claude-bottle ps\`, \`claude-bottle stop\`)\n`,
    );
    expect(await stopped()).toEqual([]);
  });

  it("refuses a name the backend says is held by something else (a container not claude-bottle's)", async () => {
    await withBottles([], { [`claude-bottle-${slug()}-db`]: "the Docker container claude-bottle-x-db" });
    const result = await cli(["shell", "--name", "db", "--", "true"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("is in use by the Docker container claude-bottle-x-db;");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("--dry-run shows the name, and a bad name is one line, exit 2", async () => {
    const dry = await cli(["shell", "--dry-run", "--name", "fix-tests"]);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout).spec.name).toBe(`claude-bottle-${slug()}-fix-tests`);
    const bad = await cli(["run", "--dry-run", "--name", "Fix_Tests"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      'claude-bottle: --name "Fix_Tests" is not a valid bottle name: use 1 to 63 lower-case letters, digits and hyphens, not starting or ending with a hyphen (e.g. --name fix-tests)\n',
    );
  });
});
