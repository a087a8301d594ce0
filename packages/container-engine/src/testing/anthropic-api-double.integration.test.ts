// The API double against the real Claude Code, in the real agent image, as a bottle runs it: uid
// 1001, the workspace bind-mounted at the same path. The double listens on all addresses for the
// length of one run, and the container reaches it as host.docker.internal (the host gateway).
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AnthropicApiDouble,
  startAnthropicApiDouble,
  type Turn,
  text,
  toolUse,
} from "@claude-bottle/core/testing";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAgentImage } from "../agent-image.js";
import { integrationEnvironment } from "./docker-environment.js";

const { engine, baseImage } = integrationEnvironment();
const imageRef = "claude-bottle-test-agent:latest";
const apiKey = `sk-ant-double-${randomBytes(6).toString("hex")}`;
let workspace: string;

beforeAll(async () => {
  await buildAgentImage(engine, imageRef, {
    kind: "bundled",
    base: baseImage,
    extraCaCerts: process.env.NODE_EXTRA_CA_CERTS,
  });
  workspace = await mkdtemp(join(tmpdir(), "claude-bottle-double-"));
  await chmod(workspace, 0o777);
});

afterAll(async () => {
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

/** Run `claude -p prompt` in the agent image against a double scripted with `turns`. */
async function runClaude(turns: Turn[], prompt: string) {
  const api = await startAnthropicApiDouble({ host: "0.0.0.0", turns });
  try {
    const result = await execa(
      "docker",
      [
        "run",
        "--rm",
        "--name",
        `claude-bottle-test-double-${randomBytes(4).toString("hex")}`,
        "--user",
        "1001:1001",
        "--volume",
        `${workspace}:${workspace}`,
        "--workdir",
        workspace,
        "--add-host",
        "host.docker.internal:host-gateway",
        "--env",
        `ANTHROPIC_BASE_URL=http://host.docker.internal:${api.port}`,
        "--env",
        "ANTHROPIC_API_KEY",
        "--env",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        imageRef,
        "claude",
        "-p",
        prompt,
        "--dangerously-skip-permissions",
        "--output-format",
        "json",
      ],
      { env: { ANTHROPIC_API_KEY: apiKey }, reject: false, timeout: 120_000 },
    );
    return { api, exitCode: result.exitCode, output: parseResult(result.stdout, result.stderr) };
  } finally {
    await api.close();
  }
}

function parseResult(stdout: string, stderr: string): Record<string, unknown> {
  try {
    return JSON.parse(stdout);
  } catch {
    throw new Error(`Claude Code printed no JSON result.\nstdout: ${stdout}\nstderr: ${stderr}`);
  }
}

function assertScriptDone(api: AnthropicApiDouble) {
  expect(() => api.assertScriptDone()).not.toThrow();
}

describe("the Anthropic API double driving the real Claude Code in the agent image", () => {
  it("makes Claude Code write a file into the bind-mounted workspace", async () => {
    const target = join(workspace, "notes", "hello.txt");
    const content = `written through the double ${randomBytes(4).toString("hex")}\nsecond line\n`;
    const { api, exitCode, output } = await runClaude(
      [toolUse("Write", { file_path: target, content }), text("I wrote the file.")],
      "Write the file please",
    );

    expect(output).toMatchObject({
      subtype: "success",
      is_error: false,
      num_turns: 2,
      result: "I wrote the file.",
    });
    expect(exitCode).toBe(0);
    expect(await readFile(target, "utf8")).toBe(content);
    expect((await stat(target)).uid).toBe(1001);

    assertScriptDone(api);
    const [first, second] = api.turnRequests();
    expect(first!.url).toBe("/v1/messages?beta=true");
    expect(first!.headers["x-api-key"]).toBe(apiKey);
    expect(JSON.stringify(first!.body)).toContain("Write the file please");
    const results = api.toolResults();
    expect(results).toHaveLength(1);
    expect(results[0]!.request).toBe(second);
    expect(results[0]!.isError).toBe(false);
  });

  it("returns a Bash command's output to the model in the next request's tool_result", async () => {
    const { api, exitCode, output } = await runClaude(
      [toolUse("Bash", { command: "echo bottle-$((6 * 7)) uid=$(id -u) cwd=$(pwd)" }), text("Ran it.")],
      "Run the command",
    );

    expect(output).toMatchObject({ subtype: "success", num_turns: 2, result: "Ran it." });
    expect(exitCode).toBe(0);
    assertScriptDone(api);
    const [result] = api.toolResults();
    expect(result!.content).toContain(`bottle-42 uid=1001 cwd=${workspace}`);
    expect(result!.isError).toBe(false);
  });

  it("makes Claude Code fail visibly when the script runs out", async () => {
    const { api, exitCode, output } = await runClaude([], "Say something");

    expect(exitCode).not.toBe(0);
    expect(output.is_error).toBe(true);
    expect(String(output.result)).toContain("anthropic API double: the script has no turn left");
    expect(api.turnRequests().length).toBeGreaterThan(0);
    expect(api.turnRequests().every((request) => request.exhausted)).toBe(true);
    expect(() => api.assertScriptDone()).toThrow(/came after the script was used up/);
  });
});
