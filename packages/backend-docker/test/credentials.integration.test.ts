// The agent's credential stays out of the bottle. The bottle gets a placeholder and ANTHROPIC_BASE_URL
// pointing at the relay to its gateway's API forwarder, which puts the real credential on each
// request to the API (here core's Anthropic API double, a named test double on this machine, which
// the gateway container reaches at the engine's address for it).
// The fake credentials are distinctive, so a search that finds nothing means something.
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { urlForEngine } from "@claude-bottle/container-engine/testing";
import {
  type AnthropicApiDouble,
  type AnthropicApiDoubleOptions,
  type RecordedRequest,
  startAnthropicApiDouble,
  text,
  toolUse,
} from "@claude-bottle/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { engine, running, runsServedBy, sh, until, useDockerBackend, warmGatewayOf } from "./support.js";

const { bottle, start, prepared } = useDockerBackend();

/** Every run's placeholder starts so; the rest is new each run. */
const placeholder = "claude-bottle-placeholder-";
const placeholderValue = "claude-bottle-placeholder-[A-Za-z0-9_-]{43}-placeholder-api-key";

function fakeSecrets() {
  const tag = randomBytes(8).toString("hex");
  return {
    ANTHROPIC_API_KEY: `sk-ant-api03-TESTSECRET-${tag}`,
    // The forwarder stands in for one credential; the other must not slip in on the side.
    CLAUDE_CODE_OAUTH_TOKEN: `sk-ant-oat01-TESTSECRET-${tag}`,
  };
}

let api: AnthropicApiDouble | undefined;
let apiUrl = "";

/** The API double on every address, and the URL the engine's containers reach it at. */
async function startApi(turns: AnthropicApiDoubleOptions["turns"]): Promise<AnthropicApiDouble> {
  api = await startAnthropicApiDouble({ turns, host: "0.0.0.0" });
  apiUrl = await urlForEngine(api.url, engine);
  return api;
}
afterEach(async () => {
  await api?.close();
  api = undefined;
});

/** A Messages request as any API client inside would send it, with the key it was given. */
const callApi = `node -e "
fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', {
  method: 'POST',
  headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
}).then((r) => r.text()).then((t) => require('fs').writeFileSync('api-reply.txt', t))"`;

/**
 * What an agent could do with its credential: copy it about (so a leak would land in the files
 * searched), and what it can see: its environment and every process's. Then it waits for "go"
 * and searches home, /tmp and the workspace for the fake credentials' common marker.
 */
const inside = [
  callApi,
  'printf %s "$ANTHROPIC_API_KEY" > /tmp/credential-copy',
  'printf %s "$ANTHROPIC_API_KEY" > "$HOME/credential-copy"',
  "env > env.txt",
  "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\"; echo; done > environ.txt",
  "ls -d /proc/[0-9]* | wc -l > processes.txt",
  "touch ready",
  "while [ ! -e go ]; do sleep 0.1; done",
  'grep -rl TESTSECRET "$HOME" /tmp "$PWD" > found.txt; echo $? > grep-status.txt',
  // the same search for the placeholder shows the search does look where it says
  `grep -rl ${placeholder} "$HOME" /tmp > placeholder-found.txt`,
].join("\n");

/** Every file under `dir` whose content holds `needle`. */
async function filesHolding(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if ((await readFile(path, "latin1")).includes(needle)) found.push(path);
  }
  return found;
}

/** The argv and environment of the host's `docker run` process for `name`, read as root reads it. */
async function dockerCliEnvironment(name: string): Promise<string> {
  for (const pid of (await readdir("/proc")).filter((entry) => /^\d+$/.test(entry))) {
    const argv = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    const args = argv.split("\0");
    if ((args.includes("run") || args.includes("exec")) && args.includes(name))
      return `${argv}\n${await readFile(`/proc/${pid}/environ`, "utf8")}`;
  }
  throw new Error(`no docker run or exec process for ${name}`);
}

function apiKeysSeen(requests: readonly RecordedRequest[]): string[] {
  return [...new Set(requests.map((request) => String(request.headers["x-api-key"])))];
}

describe("credentials stay on the host (real engine, API double on the host's loopback)", () => {
  it("the bottle holds only the placeholder, anywhere it or Docker keeps things; the API gets the real key", async () => {
    api = await startApi([]);
    const secrets = fakeSecrets();
    const { spec, workspace, home } = await bottle({
      secrets,
      anthropicBaseUrl: apiUrl,
      command: sh(inside),
    });
    const { run } = start(spec);
    const searched: string[] = [];
    try {
      await until("the bottle to be ready", async () =>
        (await readdir(workspace)).includes("ready") ? true : undefined,
      );
      const inspect = await running(spec.name);
      // docker inspect of the running container: no network, and never the key
      const inspected = await engine.exec(["inspect", spec.name], "RUN_FAILED", "inspecting");
      searched.push(inspected);
      expect((inspect.HostConfig as { NetworkMode: string }).NetworkMode).toBe("none");
      // the engine keeps no log of the session
      expect((inspect.HostConfig as { LogConfig: { Type: string } }).LogConfig.Type).toBe("none");
      const logs = await engine
        .exec(["logs", spec.name], "RUN_FAILED", "reading logs")
        .catch((error: Error) => error.message);
      searched.push(logs);
      // the image: its history and its config
      searched.push(
        await engine.exec(["history", "--no-trunc", prepared().imageId], "RUN_FAILED", "image history"),
        await engine.exec(["image", "inspect", prepared().imageId], "RUN_FAILED", "image inspect"),
      );
      // the docker CLI that started the bottle was not handed the key either
      searched.push(await dockerCliEnvironment(spec.name));
      // nor does the project's warm gateway, which holds it while the run lasts, show it to Docker:
      // not in its inspect (nor that of the `exec` the run attached with), argv or env, nor in the
      // environment of the docker CLI that attached
      const gateway = await warmGatewayOf(workspace);
      const gatewayInspect = await engine.exec(["inspect", gateway], "RUN_FAILED", "inspecting the gateway");
      expect(gatewayInspect).toContain('"dev.claude-bottle.role": "gateway"');
      searched.push(gatewayInspect, await dockerCliEnvironment(gateway));
      searched.push(
        await engine.exec(
          ["exec", gateway, "sh", "-c", "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline; true"],
          "RUN_FAILED",
          "reading the gateway's processes",
        ),
      );
      // and the bottle sees neither the gateway's files nor its processes: only the runs' folder,
      // which it cannot list, and in it its own run's sockets (end.sock tells the gateway the bottle
      // is done) and the marker that they are in place (its environment came from the CLI)
      const shared = await engine.exec(
        ["exec", spec.name, "ls", "-A", "/run/claude-bottle"],
        "RUN_FAILED",
        "listing the shared folder",
      );
      searched.push(shared);
      expect(shared.split("\n")).toEqual(["runs"]);
      const listRuns = await engine.spawn(["exec", spec.name, "ls", "/run/claude-bottle/runs"], {
        reject: false,
      });
      expect(listRuns.exitCode).not.toBe(0);
      expect(String(listRuns.stderr)).toMatch(/Permission denied/);
      const [runId] = await runsServedBy(gateway);
      const own = await engine.exec(
        ["exec", spec.name, "ls", "-A", `/run/claude-bottle/runs/${runId}`],
        "RUN_FAILED",
        "listing the run's folder",
      );
      expect(own.split("\n").sort()).toEqual(["api.sock", "end.sock", "proxy.sock", "ready"]);
    } finally {
      await writeFile(join(workspace, "go"), "");
    }
    const result = await run;
    expect(result.exitCode).toBe(0);

    const read = (file: string) => readFile(join(workspace, file), "utf8");
    const env = await read("env.txt");
    const environ = await read("environ.txt");
    expect(env).toMatch(new RegExp(`ANTHROPIC_API_KEY=${placeholderValue}\n`));
    expect(env).not.toContain("CLAUDE_CODE_OAUTH_TOKEN");
    expect(Number(await read("processes.txt"))).toBeGreaterThanOrEqual(2);
    expect(environ).toMatch(new RegExp(`ANTHROPIC_API_KEY=${placeholderValue}\n`));
    // the bottle's own search: nothing in home, /tmp or the workspace
    expect(await read("found.txt")).toBe("");
    expect((await read("grep-status.txt")).trim()).toBe("1");
    const placeholderFound = (await read("placeholder-found.txt")).split("\n");
    expect(placeholderFound).toContain("/home/claude/credential-copy");
    expect(placeholderFound).toContain("/tmp/credential-copy");
    // and the host's, over what Docker and the bottle left
    searched.push(env, environ);
    for (const secret of Object.values(secrets)) {
      for (const text of searched) expect(text).not.toContain(secret);
      expect(await filesHolding(workspace, secret)).toEqual([]);
      expect(await filesHolding(home, secret)).toEqual([]);
    }

    // the request reached the API with the real key, and the answer came back
    expect(api.requests.map((request) => request.path)).toEqual(["/v1/messages"]);
    expect(apiKeysSeen(api.requests)).toEqual([secrets.ANTHROPIC_API_KEY]);
    expect(await read("api-reply.txt")).toContain("claude-bottle API double");
  });

  it("with credentials.passthrough, the real key is inside the bottle and goes to the API from there", async () => {
    api = await startApi([]);
    const secrets = { ANTHROPIC_API_KEY: fakeSecrets().ANTHROPIC_API_KEY };
    const { spec, workspace } = await bottle({
      secrets,
      passthroughCredentials: true,
      anthropicBaseUrl: apiUrl,
      command: sh([callApi, "env > env.txt"].join("\n")),
    });
    expect((await start(spec).run).exitCode).toBe(0);
    const env = await readFile(join(workspace, "env.txt"), "utf8");
    expect(env).toContain(`ANTHROPIC_API_KEY=${secrets.ANTHROPIC_API_KEY}\n`);
    expect(env).not.toContain(placeholder);
    expect(apiKeysSeen(api.requests)).toEqual([secrets.ANTHROPIC_API_KEY]);
  });
});

describe("real Claude Code in a bottle, through the forwarder (real engine, API double)", () => {
  it("runs a prompt to success; the API double sees the real key, Claude Code only the placeholder", async () => {
    const secrets = fakeSecrets();
    api = await startApi([
      toolUse("Bash", {
        command:
          "echo key=$ANTHROPIC_API_KEY nonessential=$CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC; " +
          "cat /proc/[0-9]*/environ | tr '\\0' '\\n' | grep -c TESTSECRET || true",
      }),
      text("The bottle holds a placeholder."),
    ]);
    const { spec, workspace, home } = await bottle({
      secrets,
      anthropicBaseUrl: apiUrl,
      command: sh(
        'claude --dangerously-skip-permissions -p "What credential do you hold?" --output-format json > result.json',
      ),
    });
    const result = await start(spec).run;

    const output = JSON.parse(await readFile(join(workspace, "result.json"), "utf8"));
    expect(output).toMatchObject({
      subtype: "success",
      is_error: false,
      num_turns: 2,
      result: "The bottle holds a placeholder.",
    });
    expect(result.exitCode).toBe(0);
    expect(() => api!.assertScriptDone()).not.toThrow();
    expect(apiKeysSeen(api.requests)).toEqual([secrets.ANTHROPIC_API_KEY]);
    // what the agent saw, as the model was told it
    const [toolResult] = api.toolResults();
    expect(toolResult!.content).toMatch(new RegExp(`^key=${placeholderValue} nonessential=1\n0$`));
    // Claude Code wrote its settings and the session to the home; the key is in none of it
    expect(await filesHolding(home, placeholder)).not.toEqual([]);
    for (const secret of Object.values(secrets)) {
      expect(await filesHolding(home, secret)).toEqual([]);
      expect(await filesHolding(workspace, secret)).toEqual([]);
    }
    // nothing else was tried and refused
    expect(result.deniedHosts).toEqual([]);
  });
});
