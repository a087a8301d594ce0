// The interactive path, as a person meets it: `claude-bottle run` in a real terminal (tmux), the
// real Claude Code TUI in the Docker bottle, answering through the Anthropic API double.
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runsServedBy, urlForEngine, warmGatewayOf } from "@claude-bottle/container-engine/testing";
import { startAnthropicApiDouble, text } from "@claude-bottle/core/testing";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bin, testEnvironment } from "./claude-bottle-process.js";

let root: string;
let session: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-tui-"));
  await mkdir(join(root, "project"));
  if (process.getuid?.() === 0) await chown(join(root, "project"), 1001, 1001);
  session = `cb-tui-${process.pid}`;
});
afterEach(async () => {
  await execa("tmux", ["kill-session", "-t", session], { reject: false });
  await rm(root, { recursive: true, force: true });
});

const screen = async () => (await execa("tmux", ["capture-pane", "-p", "-t", session])).stdout;
const keys = (...args: string[]) => execa("tmux", ["send-keys", "-t", session, ...args]);

/** Wait (bounded) until the terminal shows `pattern`. */
async function waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await screen();
    if (pattern.test(last)) return last;
    await sleep(250);
  }
  throw new Error(`the terminal never showed ${pattern}; it shows:\n${last}`);
}

describe("interactive claude-bottle run", () => {
  it("opens Claude Code's TUI in a terminal, answers a prompt, and exits 0 leaving nothing behind", async () => {
    await using api = await startAnthropicApiDouble({
      turns: [text("Hello from the API double.")],
      host: "0.0.0.0",
    });
    const exitFile = join(root, "exit-code");
    const variables = testEnvironment(join(root, "data"), {
      ANTHROPIC_BASE_URL: await urlForEngine(api.url),
      ANTHROPIC_API_KEY: "sk-ant-tui-test-key",
    });
    const exports = Object.entries(variables)
      .map(([name, value]) => `${name}='${value}'`)
      .join(" ");
    const command = `cd '${join(root, "project")}' && env ${exports} '${process.execPath}' '${bin}' run; echo $? > '${exitFile}'; sleep 60`;
    await execa("tmux", ["new-session", "-d", "-s", session, "-x", "120", "-y", "40", command]);

    // First run in this project: Claude Code's own warning about bypassing permissions, once.
    await waitFor(/Bypass Permissions mode/);
    await keys("Down");
    await keys("Enter");
    await waitFor(/bypass permissions on/);
    await keys("-l", "say hello");
    await keys("Enter");
    await waitFor(/Hello from the API double\./);
    await keys("-l", "/exit");
    await keys("Enter");
    const deadline = Date.now() + 30_000;
    let code = "";
    while (!code && Date.now() < deadline) {
      code = await execa("cat", [exitFile], { reject: false }).then((r) => r.stdout.trim());
      await sleep(250);
    }
    expect(code).toBe("0");
    // No bottle is left, and the project's warm gateway (kept on purpose) serves no run.
    const left = await execa("docker", [
      "ps",
      "-a",
      "-q",
      "--filter",
      `label=dev.claude-bottle.workspace=${join(root, "project")}`,
      "--filter",
      "label=dev.claude-bottle.role=bottle",
    ]);
    expect(left.stdout).toBe("");
    const gateway = await warmGatewayOf(join(root, "project"));
    expect(gateway && (await runsServedBy(gateway))).toEqual([]);
    expect(api.turnRequests()).toHaveLength(1);
    expect(api.turnRequests()[0]?.headers["x-api-key"]).toBe("sk-ant-tui-test-key");
  });
});
