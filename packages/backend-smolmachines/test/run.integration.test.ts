// `run` on smolmachines against the smolvm TEST DOUBLE (no KVM here): the double checks every
// argv against smolvm's documented CLI, keeps machine state, and runs `exec` in a real container
// from the packed image (see its header). The image is really built, pushed to a real registry and
// pulled by the double's pack. Sessions run in child processes so tests see their terminal output.
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type AgentImageSource, type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { integrationEnvironment } from "@claude-bottle/core/testing";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { smolmachines } from "../src/index.js";
import {
  type ChildJob,
  shellImageSource,
  smolvmCalls,
  startChild,
  suffix,
  tempDir,
  useSmolvmDouble,
} from "./support.js";

const env = integrationEnvironment();
const imageRef = `claude-bottle-test-shell:${suffix()}`;
let root: string;
let log: string;
let stateDir: string;
let image: AgentImageSource;

beforeAll(async () => {
  useSmolvmDouble();
  root = await tempDir("run");
  log = join(root, "smolvm-calls.jsonl");
  stateDir = join(root, "smolvm-state");
  process.env.SMOLVM_DOUBLE_LOG = log;
  process.env.SMOLVM_DOUBLE_STATE = stateDir;
  image = await shellImageSource(env.baseImage, root);
  // Pack once; every session below boots this cached sidecar.
  await backend().prepare(imageRef);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await execa("docker", ["image", "rm", "--force", imageRef], { reject: false });
});

function backend() {
  return smolmachines({
    image,
    cacheDir: join(root, "cache"),
    dataDir: join(root, "data"),
    registryImage: env.registryImage,
    engine: env.engine,
  });
}

let sessions = 0;
async function session(run: Partial<RunSpecInput> & Pick<RunSpecInput, "command">) {
  const n = ++sessions;
  const workspace = join(root, `ws-${n}`);
  await execa("mkdir", ["-p", workspace]);
  const spec: RunSpecInput = {
    workspace,
    home: join(root, `home-${n}`),
    name: `test-${n}`,
    network: { mode: "none" },
    ...run,
  };
  const job: ChildJob = {
    cacheRoot: join(root, "cache"),
    registryImage: env.registryImage,
    image,
    imageRef,
    run: spec,
  };
  return { spec, job };
}

const text = (stdout: { text: string }[]) => stdout.map((chunk) => chunk.text).join("");

/** Machines the double still knows, and containers it still runs for them. */
async function leftovers(): Promise<string[]> {
  const machines = await readdir(join(stateDir, "machines")).catch(() => []);
  const { stdout } = await execa("docker", [
    "ps",
    "--all",
    "--quiet",
    "--filter",
    "label=dev.smolvm-double.machine",
  ]);
  const { stdout: ours } = stdout
    ? await execa("docker", [
        "inspect",
        "--format",
        '{{index .Config.Labels "dev.smolvm-double.machine"}}',
        ...stdout.split("\n"),
      ])
    : { stdout: "" };
  const containers = ours.split("\n").filter((name) => name.startsWith("test-"));
  return [...machines, ...containers.map((name) => `container of ${name}`)];
}

describe("smolmachines run (real engine, real registry, smolvm double)", () => {
  it("runs in a machine with the workspace at its own path and the home at homeTarget, passes the exit code on, and deletes the machine", async () => {
    const { spec, job } = await session({
      command: [
        "sh",
        "-c",
        'pwd; echo "$HOME $IS_SANDBOX $GREETING"; echo made > "$HOME/from-guest"; echo hi > ws-file; exit 3',
      ],
      env: { GREETING: "hello" },
    });
    const child = await startChild(job);
    const { code, result } = await child.exit;

    expect(result).toEqual({ sidecar: expect.stringMatching(/\.smolmachine\.smolmachine$/), exitCode: 3 });
    expect(code).toBe(3);
    expect(text(child.stdout)).toBe(`${spec.workspace}\n/home/claude 1 hello\n`);
    expect(await readFile(join(spec.home, "from-guest"), "utf8")).toBe("made\n");
    expect(await readFile(join(spec.workspace, "ws-file"), "utf8")).toBe("hi\n");

    const calls = (await smolvmCalls(log)).filter(
      (argv) => argv.includes("--name") && argv[argv.indexOf("--name") + 1]?.startsWith("test-1-"),
    );
    expect(calls.map((argv) => argv[1])).toEqual(["create", "start", "exec", "stop", "delete"]);
    expect(await leftovers()).toEqual([]);
  });

  it("hands secrets to the guest without putting them on any command line", async () => {
    const secret = `sk-ant-test-${suffix()}${suffix()}`;
    const { job } = await session({
      command: ["sh", "-c", 'echo "key=$ANTHROPIC_API_KEY"'],
      secrets: { ANTHROPIC_API_KEY: secret },
    });
    const child = await startChild(job);
    expect((await child.exit).result?.exitCode).toBe(0);
    expect(text(child.stdout)).toBe(`key=${secret}\n`);
    expect(JSON.stringify(await smolvmCalls(log))).not.toContain(secret);
  });

  it("streams a headless session's output while it runs, not when it ends", async () => {
    const { job } = await session({ command: ["sh", "-c", "echo first; sleep 3; echo second"] });
    const child = await startChild(job);
    const { at: exitedAt, result } = await child.exit;
    expect(result?.exitCode).toBe(0);
    const first = child.stdout.find((chunk) => chunk.text.includes("first"));
    expect(text(child.stdout)).toBe("first\nsecond\n");
    expect(exitedAt - first!.at).toBeGreaterThan(2_000);
  });

  it("gives an interactive session a terminal and a headless one none; the guest's exit 1 is its own", async () => {
    const interactive = await session({ command: ["tty"], tty: true, stdin: true });
    const quoted = (argv: string[]) => argv.map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(" ");
    const withTerminal = await startChild(interactive.job, {
      wrap: (argv) => ["script", "--quiet", "--return", "--command", quoted(argv), "/dev/null"],
    });
    const tty = await withTerminal.exit;
    expect(tty.result?.exitCode).toBe(0);
    expect(text(withTerminal.stdout)).toMatch(/\/dev\/pts\/\d+/);

    const headless = await session({ command: ["tty"] });
    const noTerminal = await startChild(headless.job);
    const plain = await noTerminal.exit;
    expect(plain.result).toMatchObject({ exitCode: 1 });
    expect(text(noTerminal.stdout)).toContain("not a tty");
  });

  it("maps the network policy: none leaves the guest without an interface, open gives it one", async () => {
    const none = await session({ command: ["ls", "/sys/class/net"], network: { mode: "none" } });
    const closed = await startChild(none.job);
    expect((await closed.exit).result?.exitCode).toBe(0);
    expect(text(closed.stdout).split(/\s+/).filter(Boolean)).toEqual(["lo"]);

    const open = await session({ command: ["ls", "/sys/class/net"], network: { mode: "open" } });
    const opened = await startChild(open.job);
    expect((await opened.exit).result?.exitCode).toBe(0);
    expect(text(opened.stdout)).toContain("eth0");
  });

  it("reports smolvm's own failure as an error with its message, and still deletes the machine", async () => {
    const { job } = await session({
      command: ["true"],
      network: { mode: "allowlist", allow: ["no-such-host.invalid"] },
    });
    const child = await startChild(job);
    const { result } = await child.exit;
    expect(result?.error).toMatchObject({
      code: "RUN_FAILED",
      message: expect.stringContaining("cannot resolve allowed host 'no-such-host.invalid'"),
    });
    const created = (await smolvmCalls(log)).find(
      (argv) => argv[1] === "create" && argv.includes("no-such-host.invalid"),
    );
    expect(created).toBeDefined();
    expect(await leftovers()).toEqual([]);
  });

  it("on SIGTERM stops and deletes the machine and ends with ABORTED", async () => {
    const { job } = await session({ command: ["sleep", "60"] });
    const child = await startChild(job);
    for (let i = 0; i < 200; i++) {
      if ((await smolvmCalls(log)).some((argv) => argv[1] === "exec" && argv.includes("sleep"))) break;
      await sleep(100);
    }
    await sleep(1_000);
    const killedAt = Date.now();
    process.kill(child.pid, "SIGTERM");
    const { result, at } = await child.exit;
    expect(result?.error?.code).toBe("ABORTED");
    expect(at - killedAt).toBeLessThan(15_000);
    expect(await leftovers()).toEqual([]);
  });

  it("refuses more than 4 mounts before booting anything", async () => {
    const extra = join(root, "extra");
    await execa("mkdir", ["-p", extra]);
    const before = (await smolvmCalls(log)).length;
    const { spec } = await session({
      command: ["true"],
      mounts: ["/a", "/b", "/c"].map((target) => ({ source: extra, target })),
    });
    const b = backend();
    const prepared = await b.prepare(imageRef);
    await expect(b.run(prepared, runSpecSchema.parse(spec))).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringContaining("at most 4 folders"),
    });
    expect((await smolvmCalls(log)).slice(before).filter((argv) => argv[0] === "machine")).toEqual([]);
    await expect(stat(join(root, "extra"))).resolves.toBeDefined();
  });
});
