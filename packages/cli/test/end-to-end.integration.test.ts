// End to end: the built claude-bottle runs the real Claude Code in the real Docker bottle, talking to
// the Anthropic API double (a scripted test double of the Messages API) on this machine, which the
// bottle's gateway reaches at the engine's address for it.
import { chown, mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { urlForEngine } from "@claude-bottle/container-engine/testing";
import { startAnthropicApiDouble, text, toolUse } from "@claude-bottle/core/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;
let owner: { uid: number; gid: number };

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-e2e-"));
  workspace = join(root, "project");
  await mkdir(workspace);
  // As root, claude-bottle runs the agent as the workspace's owner (never as root): give it one.
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
  const { uid, gid } = await stat(workspace);
  owner = { uid, gid };
});
afterEach(() => rm(root, { recursive: true, force: true }));

function claudeBottle(args: string[], apiUrl: string) {
  return runClaudeBottle(args, {
    cwd: workspace,
    dataDir: join(root, "data"),
    env: {
      ANTHROPIC_BASE_URL: apiUrl,
      ANTHROPIC_API_KEY: "sk-ant-e2e-test-key",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    },
  });
}

describe("claude-bottle run, end to end with real Claude Code", () => {
  it("writes a file through Claude Code's Write tool into the host workspace, owned by the workspace's user", async () => {
    const target = join(workspace, "hello.txt");
    await using api = await startAnthropicApiDouble({
      host: "0.0.0.0",
      turns: [
        toolUse("Write", { file_path: target, content: "written from inside the bottle\n" }),
        text("Done: wrote hello.txt."),
      ],
    });
    const { exitCode, stdout, stderr } = await claudeBottle(
      ["run", "-q", "--", "-p", "write hello.txt", "--output-format", "json"],
      await urlForEngine(api.url),
    );
    expect(stderr).toBe("");
    expect(exitCode).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ type: "result", subtype: "success", is_error: false, num_turns: 2 });
    expect(result.result).toBe("Done: wrote hello.txt.");
    expect(await readFile(target, "utf8")).toBe("written from inside the bottle\n");
    const file = await stat(target);
    expect({ uid: file.uid, gid: file.gid }).toEqual(owner);
    api.assertScriptDone();
  });

  it("runs a command through the Bash tool and its output reaches the transcript", async () => {
    await using api = await startAnthropicApiDouble({
      host: "0.0.0.0",
      turns: [
        toolUse("Bash", { command: "echo bottled-$((6*7)) in $(pwd) as $(id -u)", description: "say hi" }),
        text("ok"),
      ],
    });
    const { exitCode, stdout } = await claudeBottle(
      ["run", "-q", "--", "-p", "run it", "--output-format", "json"],
      await urlForEngine(api.url),
    );
    expect(exitCode).toBe(0);
    expect(JSON.parse(stdout).subtype).toBe("success");
    const results = api.toolResults();
    expect(results).toHaveLength(1);
    expect(results[0]?.content).toContain(`bottled-42 in ${workspace} as ${owner.uid}`);
    expect(results[0]?.isError).toBe(false);
  });

  it("passes Claude Code's failure on as claude-bottle's exit code", async () => {
    await using api = await startAnthropicApiDouble({ turns: [], host: "0.0.0.0" });
    const { exitCode, stdout } = await claudeBottle(
      ["run", "-q", "--", "-p", "hi", "--output-format", "json"],
      await urlForEngine(api.url),
    );
    expect(exitCode).toBe(1);
    expect(JSON.parse(stdout).is_error).toBe(true);
  });
});
