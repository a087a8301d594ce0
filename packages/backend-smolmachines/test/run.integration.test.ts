// `run` on smolmachines against the smolvm TEST DOUBLE (no KVM here): the double checks every
// argv against smolvm's documented CLI, keeps machine state, and runs `exec` in a real container
// from the packed image (see its header). The image is really built, pushed to a real registry and
// pulled by the double's pack. Sessions run in child processes so tests see their terminal output.
import { chown, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { integrationEnvironment } from "@claude-bottle/container-engine/testing";
import type { AgentImageSource } from "@claude-bottle/core";
import { type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { smolmachines } from "../src/index.js";
import {
  type ChildJob,
  removeDoubleImages,
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
  await removeDoubleImages(stateDir);
  await rm(root, { recursive: true, force: true });
  await execa("docker", ["image", "rm", "--force", imageRef], { reject: false });
});

function backend() {
  return smolmachines({
    image,
    cacheDir: join(root, "cache"),
    dataDir: join(root, "data"),
    engine: env.engine,
  });
}

/** The agent's identity in these sessions: not root, and not the test's own user. */
const agent = { uid: 4321, gid: 4322 };

let sessions = 0;
async function session(run: Partial<RunSpecInput> & Pick<RunSpecInput, "command">) {
  const n = ++sessions;
  const workspace = join(root, `ws-${n}`);
  const home = join(root, `home-${n}`);
  for (const dir of [workspace, home]) {
    await mkdir(dir, { recursive: true });
    await chown(dir, agent.uid, agent.gid);
  }
  const spec: RunSpecInput = {
    workspace,
    home,
    name: `test-${n}`,
    network: { mode: "none" },
    user: agent,
    // A loopback API (as with a local gateway): no name to resolve, reached through the host gateway.
    anthropicBaseUrl: "http://127.0.0.1:9",
    ...run,
  };
  const job: ChildJob = {
    cacheRoot: join(root, "cache"),
    image,
    imageRef,
    run: spec,
  };
  return { spec, job };
}

const text = (stdout: { text: string }[]) => stdout.map((chunk) => chunk.text).join("");

/** Machines the double still knows, containers it still runs for them, and claude-bottle's records of them. */
async function leftovers(): Promise<string[]> {
  const machines = await readdir(join(stateDir, "machines")).catch(() => []);
  const records = (await readdir(join(root, "data", "smolmachines", "machines")).catch(() => [])).map(
    (name) => `record ${name}`,
  );
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
  return [...machines, ...records, ...containers.map((name) => `container of ${name}`)];
}

describe("smolmachines run (real engine, real registry, smolvm double)", () => {
  it("runs in a machine with the workspace at its own path and the home at homeTarget, as the user, passes the exit code on, and deletes the machine", async () => {
    const { spec, job } = await session({
      command: [
        "sh",
        "-c",
        'pwd; echo "$HOME $(id -u):$(id -g) $GREETING $(printenv IS_SANDBOX || echo unset)"; echo made > "$HOME/from-guest"; echo hi > ws-file; exit 3',
      ],
      env: { GREETING: "hello" },
    });
    const child = await startChild(job);
    const { code, result } = await child.exit;

    expect(result).toEqual({ sidecar: expect.stringMatching(/\.smolmachine\.smolmachine$/), exitCode: 3 });
    expect(code).toBe(3);
    expect(text(child.stdout)).toBe(`${spec.workspace}\n/home/claude 4321:4322 hello unset\n`);
    expect(await readFile(join(spec.home, "from-guest"), "utf8")).toBe("made\n");
    expect(await readFile(join(spec.workspace, "ws-file"), "utf8")).toBe("hi\n");
    // Files the agent writes on the mounted workspace belong to the user, not to root.
    expect(await stat(join(spec.workspace, "ws-file"))).toMatchObject({ uid: 4321, gid: 4322 });
    const exec = (await smolvmCalls(log)).find(
      (argv) => argv[1] === "exec" && argv[argv.indexOf("--name") + 1]?.startsWith("test-1-"),
    );
    expect(exec?.slice(exec.indexOf("--") + 1, exec.indexOf("--") + 7)).toEqual([
      "setpriv",
      "--reuid=4321",
      "--regid=4322",
      "--clear-groups",
      "--no-new-privs",
      "--",
    ]);

    const calls = (await smolvmCalls(log)).filter(
      (argv) => argv.includes("--name") && argv[argv.indexOf("--name") + 1]?.startsWith("test-1-"),
    );
    expect(calls.map((argv) => argv[1])).toEqual(["create", "start", "exec", "stop", "delete"]);
    expect(await leftovers()).toEqual([]);
  });

  it("the agent cannot take root back: no capabilities, no new privileges, the root folder out of reach", async () => {
    const { job } = await session({
      command: [
        "sh",
        "-c",
        'id -u; grep -E "^(CapEff|CapPrm|NoNewPrivs):" /proc/self/status; (echo x > /agent-was-here) 2>/dev/null && echo wrote-root || echo no-root',
      ],
    });
    const child = await startChild(job);
    expect((await child.exit).result?.exitCode).toBe(0);
    expect(
      text(child.stdout)
        .split("\n")
        .map((line) => line.replace(/\s+/g, " ")),
    ).toEqual([
      "4321",
      "CapPrm: 0000000000000000",
      "CapEff: 0000000000000000",
      "NoNewPrivs: 1",
      "no-root",
      "",
    ]);
  });

  it("keeps the API key out of the VM: bound to the API's host, the guest holds only smolvm's placeholder", async () => {
    const secret = `sk-ant-test-${suffix()}${suffix()}`;
    const { spec, job } = await session({
      command: ["sh", "-c", "env; cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n'"],
      secrets: { ANTHROPIC_API_KEY: secret },
      // A host name this machine resolves offline, on HTTPS port 443: what a binding needs.
      anthropicBaseUrl: "https://registry.npmjs.org",
    });
    const child = await startChild(job);
    expect((await child.exit).result).toMatchObject({ exitCode: 0 });
    const guest = text(child.stdout);
    expect(guest).not.toContain(secret);
    expect(guest).toMatch(/^ANTHROPIC_API_KEY=SMOL_PLACEHOLDER_ANTHROPIC_API_KEY_[0-9A-F]{32}$/m);
    const calls = (await smolvmCalls(log)).filter(
      (argv) => argv.includes(spec.name) || argv.some((a) => a.startsWith(`${spec.name}-`)),
    );
    const create = calls.find((argv) => argv[1] === "create");
    expect(create).toEqual(
      expect.arrayContaining(["--credential", "anthropic-api-key=ANTHROPIC_API_KEY@registry.npmjs.org"]),
    );
    expect(JSON.stringify(await smolvmCalls(log))).not.toContain(secret);
    // smolvm reads the value from its own environment when the machine starts, never from argv.
    const entries = (await readFile(log, "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line));
    const start = entries.find(
      (entry) =>
        entry.argv[1] === "start" &&
        entry.argv[entry.argv.indexOf("--name") + 1]?.startsWith(`${spec.name}-`),
    );
    expect(start?.credentialEnv).toContain("ANTHROPIC_API_KEY");
  });

  it("with a smolvm too old to keep the key out, refuses before creating a machine; credentials.passthrough passes it in", async () => {
    const secret = `sk-ant-test-${suffix()}${suffix()}`;
    const refused = await session({ command: ["true"], secrets: { ANTHROPIC_API_KEY: secret } });
    const before = (await smolvmCalls(log)).filter((argv) => argv[1] === "create").length;
    const child = await startChild(refused.job, { env: { SMOLVM_DOUBLE_VERSION: "1.18.2" } });
    expect((await child.exit).result?.error).toMatchObject({
      code: "BACKEND_UNAVAILABLE",
      message: expect.stringContaining("smolvm 1.18.2 cannot keep ANTHROPIC_API_KEY out of the VM"),
      hint: expect.stringContaining("credentials.passthrough"),
    });
    expect((await smolvmCalls(log)).filter((argv) => argv[1] === "create").length).toBe(before);

    const passed = await session({
      command: ["sh", "-c", 'echo "key=$ANTHROPIC_API_KEY"'],
      secrets: { ANTHROPIC_API_KEY: secret },
      passthroughCredentials: true,
    });
    const inside = await startChild(passed.job, { env: { SMOLVM_DOUBLE_VERSION: "1.17.0" } });
    expect((await inside.exit).result?.exitCode).toBe(0);
    expect(text(inside.stdout)).toBe(`key=${secret}\n`);
    expect(JSON.stringify(await smolvmCalls(log))).not.toContain(secret);
    expect(await leftovers()).toEqual([]);
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

  it("maps the network policy: none admits the API alone, open gives the guest a network", async () => {
    const none = await session({ command: ["true"], network: { mode: "none" } });
    const closed = await startChild(none.job);
    expect((await closed.exit).result?.exitCode).toBe(0);
    const create = (await smolvmCalls(log)).find(
      (argv) => argv[1] === "create" && argv[argv.indexOf("--name") + 1]?.startsWith(`${none.spec.name}-`),
    );
    const networkFlags = create!.filter((arg) => /^--(net|allow-host|allow-cidr|credential)$/.test(arg));
    expect(networkFlags).toEqual(["--allow-cidr"]);
    expect(create).toContain("100.96.0.1/32");

    const open = await session({
      command: ["ls", "/sys/class/net"],
      network: { mode: "open" },
      anthropicBaseUrl: "https://registry.npmjs.org",
    });
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
