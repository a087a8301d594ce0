// End to end, as a user runs it: the built claude-bottle, `--backend podman`, as the invoking
// regular user, runs the real Claude Code in a rootless Podman bottle against the Anthropic API
// double (a scripted test double of the Messages API) on this machine. The CLI is not a dependency
// of this package (it depends on this one), so its build is found beside it in the checkout; turbo
// builds it before these tests (turbo.json here).
import { access, mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startAnthropicApiDouble, text, toolUse } from "@claude-bottle/core/testing";
import { execa } from "execa";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { baseImage, engine, imageRef, testUser, until } from "./support.js";

const bin = fileURLToPath(new URL("../../cli/dist/bin.js", import.meta.url));
const realKey = "sk-ant-api03-PODMAN-E2E-real-key-0123456789";

let root: string;
let workspace: string;

beforeAll(async () => {
  await access(bin).catch(() => {
    throw new Error(`the CLI is not built (${bin}); run pnpm build first`);
  });
});
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-podman-e2e-"));
  workspace = join(root, "project");
  await mkdir(workspace);
});
afterEach(() => rm(root, { recursive: true, force: true }));

function claudeBottle(args: string[], apiUrl: string, extraEnv: Record<string, string> = {}) {
  return execa("node", [bin, ...args], {
    cwd: workspace,
    reject: false,
    stdin: "ignore",
    env: {
      CLAUDE_BOTTLE_BASE_IMAGE: baseImage,
      CLAUDE_BOTTLE_IMAGE: imageRef,
      CLAUDE_BOTTLE_DATA_DIR: join(root, "data"),
      // The double listens on every address; a loopback URL is what a user's local gateway has, and
      // the bottle's gateway reaches it as host.containers.internal.
      ANTHROPIC_BASE_URL: apiUrl.replace("0.0.0.0", "127.0.0.1"),
      ANTHROPIC_API_KEY: realKey,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      ...extraEnv,
    },
  });
}

/** Containers and volumes named after a claude-bottle bottle of this test's project. */
async function projectLeftovers(): Promise<string[]> {
  const prefix = "claude-bottle-project-";
  const names = [...(await engine.containerNames()), ...(await engine.volumeNames())];
  return names.filter((name) => name.startsWith(prefix));
}

describe("claude-bottle run --backend podman, end to end with real Claude Code, as a regular user", () => {
  it("writes a file with the Write tool, owned by the user, with the key kept outside the bottle", async () => {
    const target = join(workspace, "hello.txt");
    await using api = await startAnthropicApiDouble({
      host: "0.0.0.0",
      turns: [
        toolUse("Write", { file_path: target, content: "written from a podman bottle\n" }),
        text("Done: wrote hello.txt."),
      ],
    });
    const { exitCode, stdout, stderr } = await claudeBottle(
      ["run", "-q", "--backend", "podman", "--", "-p", "write hello.txt", "--output-format", "json"],
      api.url,
    );
    expect(stderr).toBe("");
    expect(exitCode).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ subtype: "success", is_error: false, num_turns: 2 });
    expect(await readFile(target, "utf8")).toBe("written from a podman bottle\n");
    const file = await stat(target);
    expect({ uid: file.uid, gid: file.gid }).toEqual(testUser);
    // The forwarder put the real key on the way out; Claude Code inside sent a placeholder.
    const turns = api.requests.filter((request) => request.role === "turn");
    expect(turns.length).toBe(2);
    for (const request of turns) expect(request.headers["x-api-key"]).toBe(realKey);
    api.assertScriptDone();
    expect(await projectLeftovers()).toEqual([]);
    // doctor reads the Claude Code version from the image this backend built, not from Docker.
    const doctor = await claudeBottle(["doctor"], api.url, { CLAUDE_BOTTLE_BACKEND: "podman" });
    const escaped = imageRef.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    expect(doctor.stdout).toMatch(new RegExp(`^claude code: \\d+\\.\\d+\\.\\d+ in ${escaped}`, "m"));
  });

  it("runs the Bash tool as the user; the bottle holds no trace of the key and reaches no host off the allow-list", async () => {
    // The key, spelt in two halves the shell joins: the command itself is kept in the bottle's home
    // (Claude Code's transcript) and must not be what the search finds.
    const half = realKey.length / 2;
    const script = [
      `k="${realKey.slice(0, half)}""${realKey.slice(half)}"`,
      "echo bottled-$((6*7)) as $(id -u)",
      // The real key: not in any process's environment, not in the bottle's files.
      `echo key-in-env=$(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c "$k")`,
      `echo key-in-files=$(grep -rls "$k" /etc /run /tmp $HOME 2>/dev/null | wc -l)`,
      // Egress: a host not on the (empty) allow-list, through the proxy the bottle is given.
      'echo egress=$(NODE_USE_ENV_PROXY=1 node -e \'fetch("https://registry.npmjs.org/").then(r=>console.log(r.status),e=>console.log("refused"))\')',
    ].join("; ");
    await using api = await startAnthropicApiDouble({
      host: "0.0.0.0",
      turns: [toolUse("Bash", { command: script, description: "look around" }), text("ok")],
    });
    const { exitCode, stdout, stderr } = await claudeBottle(
      ["run", "-q", "--backend", "podman", "--", "-p", "run it", "--output-format", "json"],
      api.url,
    );
    expect(exitCode).toBe(0);
    expect(JSON.parse(stdout).subtype).toBe("success");
    const [result] = api.toolResults();
    expect(result?.isError).toBe(false);
    expect(result?.content).toContain(`bottled-42 as ${testUser.uid}`);
    expect(result?.content).toContain("key-in-env=0");
    expect(result?.content).toContain("key-in-files=0");
    expect(result?.content).toMatch(/egress=(refused|403)/);
    // The run ends naming what it blocked.
    expect(stderr).toMatch(/blocked registry\.npmjs\.org/);
  });

  it("on SIGTERM stops and removes the bottle, its gateway and their volume", async () => {
    await using api = await startAnthropicApiDouble({ host: "0.0.0.0", turns: [] });
    const child = claudeBottle(["shell", "-q", "--backend", "podman", "--", "sleep", "300"], api.url);
    await until("the bottle to run", async () =>
      (await engine.containerNames()).some(
        (name) => name.startsWith("claude-bottle-project-") && !name.endsWith("-gateway"),
      )
        ? true
        : undefined,
    );
    child.kill("SIGTERM");
    const { exitCode } = await child;
    expect(exitCode).not.toBe(0);
    expect(await projectLeftovers()).toEqual([]);
  });
});
