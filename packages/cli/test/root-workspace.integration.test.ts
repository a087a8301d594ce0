// Root on a folder root owns (a CI job, a dev container): the built claude-bottle runs the real
// Claude Code in a real Docker bottle against the Anthropic API double (a scripted test double of
// the Messages API). The agent runs as uid 0 so it can write there, and stays without privilege:
// Write and Bash work, the files belong to root, and the agent's processes have no capability and
// can't gain one.
import { mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { urlForEngine } from "@claude-bottle/container-engine/testing";
import { startAnthropicApiDouble, text, toolUse } from "@claude-bottle/core/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;

beforeEach(async () => {
  // The case needs root on the host; CI and this machine's tests run as root.
  expect(process.getuid?.(), "this test runs claude-bottle as root and must itself run as root").toBe(0);
  root = await mkdtemp(join(tmpdir(), "cb-root-ws-"));
  workspace = join(root, "project");
  await mkdir(workspace);
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe("claude-bottle run as root on a root-owned workspace, with real Claude Code", () => {
  it("writes with Write and Bash, as root, with no capability and no-new-privileges", async () => {
    expect((await stat(workspace)).uid).toBe(0);
    const written = join(workspace, "written.txt");
    await using api = await startAnthropicApiDouble({
      turns: [
        toolUse("Write", { file_path: written, content: "from the Write tool\n" }),
        toolUse("Bash", {
          command:
            "echo from-bash > bashed.txt && echo uid=$(id -u) && grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status",
          description: "write and inspect",
        }),
        text("Done."),
      ],
      // The bottle's gateway reaches it at this machine's address as the engine sees it.
      host: "0.0.0.0",
    });
    const { exitCode, stdout, stderr } = await runClaudeBottle(
      ["run", "-q", "--", "-p", "write two files", "--output-format", "json"],
      {
        cwd: workspace,
        dataDir: join(root, "data"),
        env: {
          ANTHROPIC_BASE_URL: await urlForEngine(api.url),
          ANTHROPIC_API_KEY: "sk-ant-root-test-key",
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
        },
      },
    );

    expect(exitCode, stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ type: "result", subtype: "success", is_error: false });
    const results = api.toolResults();
    expect(results.map((result) => result.isError)).toEqual([false, false]);
    const bash = results[1]!.content;
    expect(bash).toContain("uid=0");
    expect(bash).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(bash).toMatch(/^CapPrm:\s+0000000000000000$/m);
    expect(bash).toMatch(/^NoNewPrivs:\s+1$/m);

    expect(await readFile(written, "utf8")).toBe("from the Write tool\n");
    expect(await readFile(join(workspace, "bashed.txt"), "utf8")).toBe("from-bash\n");
    for (const file of [written, join(workspace, "bashed.txt")]) {
      const { uid, gid } = await stat(file);
      expect({ uid, gid }).toEqual({ uid: 0, gid: 0 });
    }
    // It says what it did, and why.
    expect(stderr).toBe(
      `claude-bottle: ${workspace} belongs to root, so the agent runs as root in the bottle to write there (in a Docker bottle uid 0 with every capability dropped and no-new-privileges, which can change files root owns in the mounted folders and nothing more); to avoid it, chown the folder to a regular user`,
    );

    api.assertScriptDone();
  });
});
