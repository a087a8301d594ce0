// `claude-bottle login` / `logout` as a user meets them, through the built CLI: the stored key
// reaches the API (core's Anthropic API double, a named test double on the host's loopback) through
// the forwarder while the real Claude Code in the Docker bottle sees only the placeholder; without
// any credential a headless run stops before a bottle starts. The keys are distinctive, so a search
// that finds nothing means something.
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { urlForEngine } from "@claude-bottle/container-engine/testing";
import { startAnthropicApiDouble, text, toolUse } from "@claude-bottle/core/testing";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bin, testEnvironment } from "./claude-bottle-process.js";

let root: string;
let workspace: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-login-"));
  workspace = join(root, "project");
  await mkdir(workspace);
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
});
afterEach(() => rm(root, { recursive: true, force: true }));

/** The test environment with no credential in it, and the credential file under `root`. */
function environment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...testEnvironment(join(root, "data"), extra),
    XDG_CONFIG_HOME: join(root, "config"),
    // A developer's desktop keyring must not be touched by tests: keep the credential in the file.
    CLAUDE_BOTTLE_CREDENTIAL_STORE: "file",
    ANTHROPIC_API_KEY: undefined,
    ANTHROPIC_AUTH_TOKEN: undefined,
    CLAUDE_CODE_OAUTH_TOKEN: undefined,
  };
}

function claudeBottle(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  return execa("node", [bin, ...args], {
    cwd: workspace,
    reject: false,
    env: environment(options.env),
    ...(options.input === undefined ? { stdin: "ignore" as const } : { input: options.input }),
  });
}

describe("claude-bottle login", () => {
  it("stores a key from stdin; a headless run gets it to the API and the bottle only a placeholder; after logout -p fails fast", async () => {
    const key = `sk-ant-api03-TESTSECRET-${randomBytes(12).toString("hex")}`;
    const printed: string[] = [];

    const login = await claudeBottle(["login"], { input: `${key}\n` });
    printed.push(login.stdout, login.stderr);
    expect(login.exitCode).toBe(0);
    const file = join(root, "config", "claude-bottle", "credential.json");
    expect(login.stdout).toBe(`claude-bottle: stored an API key in ${file}`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const doctor = await claudeBottle(["doctor"]);
    printed.push(doctor.stdout, doctor.stderr);
    expect(doctor.stdout).toMatch(new RegExp(`^credential: an API key from ${file}$`, "m"));

    await using api = await startAnthropicApiDouble({
      turns: [
        toolUse("Bash", { command: 'echo "inside: $ANTHROPIC_API_KEY"', description: "show the key" }),
        text("done"),
      ],
      // The bottle's gateway reaches it at this machine's address as the engine sees it.
      host: "0.0.0.0",
    });
    const apiUrl = await urlForEngine(api.url);
    const run = await claudeBottle(["run", "-q", "--", "-p", "show your key", "--output-format", "json"], {
      env: { ANTHROPIC_BASE_URL: apiUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" },
    });
    printed.push(run.stdout, run.stderr);
    expect(run.exitCode).toBe(0);
    expect(JSON.parse(run.stdout).subtype).toBe("success");
    const turns = api.turnRequests();
    expect(turns.length).toBeGreaterThanOrEqual(2);
    for (const request of turns) expect(request.headers["x-api-key"]).toBe(key);
    const [result] = api.toolResults();
    // A placeholder new for this run, never the key.
    expect(result?.content).toMatch(
      /inside: claude-bottle-placeholder-[A-Za-z0-9_-]{43}-placeholder-api-key/,
    );
    expect(result?.content).not.toContain(key);

    const logout = await claudeBottle(["logout"]);
    printed.push(logout.stdout, logout.stderr);
    expect(logout.exitCode).toBe(0);
    expect(logout.stdout).toBe(`claude-bottle: removed the stored credential from ${file}`);

    const requestsBefore = api.requests.length;
    const started = performance.now();
    const headless = await claudeBottle(["run", "--", "-p", "hi"], { env: { ANTHROPIC_BASE_URL: apiUrl } });
    const seconds = (performance.now() - started) / 1000;
    printed.push(headless.stdout, headless.stderr);
    expect(headless.exitCode).toBe(2);
    expect(headless.stdout).toBe("");
    expect(headless.stderr).toBe(
      "claude-bottle: no credential for Claude Code, and a headless run cannot log in; run `claude setup-token` then `claude-bottle login` (Claude subscription), `claude-bottle login` with an API key, or export ANTHROPIC_API_KEY",
    );
    // Before any build or bottle: no progress line, nothing reached the API, and quickly.
    expect(api.requests.length).toBe(requestsBefore);
    expect(seconds).toBeLessThan(10);

    for (const output of printed) expect(output).not.toContain(key);
  });

  it("on a desktop session keeps the credential in the Secret Service, not in a file", async () => {
    // A real gnome-keyring on a private D-Bus session (dbus-run-session), its keyrings under `root`.
    const key = `sk-ant-api03-TESTSECRET-${randomBytes(12).toString("hex")}`;
    const lookup = "secret-tool lookup service claude-bottle username anthropic-credential";
    const script = [
      "printf '\\n' | gnome-keyring-daemon --unlock --components=secrets >/dev/null",
      `node ${bin} login`,
      "echo login=$?",
      `${lookup}; echo`,
      `node ${bin} doctor | grep '^credential:'`,
      `node ${bin} logout`,
      `${lookup}; echo lookup-after-logout=$?`,
    ].join("\n");
    const session = await execa("dbus-run-session", ["--", "bash", "-c", script], {
      cwd: workspace,
      reject: false,
      input: `${key}\n`,
      env: {
        ...environment(),
        CLAUDE_BOTTLE_CREDENTIAL_STORE: undefined,
        XDG_DATA_HOME: join(root, "data-home"),
        DBUS_SESSION_BUS_ADDRESS: undefined,
      },
    });
    const lines = session.stdout.split("\n");
    expect(lines[0]).toBe("claude-bottle: stored an API key in the Secret Service (your desktop keyring)");
    expect(lines[1]).toBe("login=0");
    // What the Secret Service itself holds: the credential, not printed by claude-bottle.
    expect(JSON.parse(lines[2]!)).toEqual({ kind: "api-key", value: key });
    expect(lines[3]).toBe("credential: an API key from the Secret Service (your desktop keyring)");
    expect(lines[4]).toBe(
      "claude-bottle: removed the stored credential from the Secret Service (your desktop keyring)",
    );
    expect(lines[5]).toMatch(/^lookup-after-logout=[1-9]/);
    expect(await stat(join(root, "config", "claude-bottle", "credential.json")).catch(() => "none")).toBe(
      "none",
    );
    expect(session.stderr).not.toContain(key);
  });

  it("reads the credential at a terminal prompt that shows nothing of it", async () => {
    const token = `sk-ant-oat01-TESTSECRET-${randomBytes(12).toString("hex")}`;
    const session = `cb-login-${process.pid}-${randomBytes(3).toString("hex")}`;
    const env = environment();
    const assignments = Object.entries(env)
      .filter(([, value]) => value !== undefined)
      .map(([name, value]) => `${name}='${String(value).replace(/'/g, "'\\''")}'`)
      .join(" ");
    await execa("tmux", [
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "200",
      "-y",
      "20",
      `env -u ANTHROPIC_API_KEY -u ANTHROPIC_AUTH_TOKEN -u CLAUDE_CODE_OAUTH_TOKEN ${assignments} node ${bin} login; echo "exit=$?"; sleep 60`,
    ]);
    try {
      const screen = async () => (await execa("tmux", ["capture-pane", "-p", "-t", session])).stdout;
      const waitFor = async (pattern: RegExp) => {
        for (let i = 0; i < 120; i++) {
          const shown = await screen();
          if (pattern.test(shown)) return shown;
          await sleep(250);
        }
        throw new Error(`the terminal never showed ${pattern}; it shows:\n${await screen()}`);
      };
      await waitFor(/Paste your Anthropic API key/);
      await execa("tmux", ["send-keys", "-t", session, "-l", token]);
      await sleep(300);
      expect(await screen()).not.toContain("TESTSECRET");
      await execa("tmux", ["send-keys", "-t", session, "Enter"]);
      const shown = await waitFor(/exit=\d+/);
      expect(shown).toContain("stored an OAuth token (from claude setup-token) in");
      expect(shown).toContain("exit=0");
      expect(shown).not.toContain("TESTSECRET");
    } finally {
      await execa("tmux", ["kill-session", "-t", session], { reject: false });
    }
  });
});
