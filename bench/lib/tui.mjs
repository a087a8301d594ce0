/**
 * How long until the interactive Claude Code TUI shows its prompt: `claude-bottle run --backend
 * docker` in a real terminal (a tmux pane, 120 × 40), against the raw engine, `docker run -it` of
 * the same agent image with the same hardening flags running `claude --dangerously-skip-permissions`
 * itself. Both are warm: the image is built and every layer cached, and each side has been started
 * once before the measured rounds (the one run in which a person accepts Claude Code's Bypass
 * Permissions warning).
 *
 * Claude Code talks to the Anthropic API double (core's test kit) on both sides. Nothing reaches it
 * before the prompt shows, but a TUI without an API to point at would not be a real start. The
 * double listens on all addresses: the bottle reaches it through claude-bottle's gateway, the raw
 * container directly over the engine's default bridge (it has no gateway, so `--network none`
 * would leave it no way to the API at all).
 *
 * Onboarding is skipped the same way on both sides: claude-bottle seeds its bottle home's
 * `.claude.json` before every run (onboarding done, the workspace trusted, its placeholder key
 * approved); the raw side gets a home of its own seeded with the same three settings for its key.
 *
 * "Shown" is the first capture of the pane (`tmux capture-pane`, every 20 ms) that holds the status
 * line under the prompt, the marker the interactive end-to-end test waits for. Each sample runs
 * from just before the tmux client that starts the command is spawned to the return of that
 * capture, so its resolution is the poll interval plus one capture. Then the TUI is left with
 * `/exit`, and the next sample starts only once the command has ended (claude-bottle has removed
 * its bottle and gateway, `docker run --rm` its container).
 */
import { randomBytes } from "node:crypto";
import { chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { bottleRunArgs, ImageEngine } from "../../packages/container-engine/dist/index.js";
import { urlForEngine } from "../../packages/container-engine/dist/testing/index.js";
import { startAnthropicApiDouble } from "../../packages/core/dist/testing/index.js";
import { interleave, now, output, summary } from "./measure.mjs";

/** The status line under Claude Code's prompt; the interactive end-to-end test waits for it too. */
const promptMarker = /bypass permissions on/;
/** Claude Code's one-time warning before the first run with permission prompts off. */
const bypassWarning = /Bypass Permissions mode/;
const acceptChosen = /❯\s*(\d\.\s*)?Yes, I accept/;
export const pollIntervalMs = 20;
const promptTimeoutMs = 120_000;
const exitTimeoutMs = 60_000;

export async function measureTuiPrompt({ setup, runs, log }) {
  await output("tmux", ["-V"]).catch(() => {
    throw new Error("the tui group needs tmux: install it (apt-get install tmux) and run again");
  });
  await using api = await startAnthropicApiDouble({ turns: [], host: "0.0.0.0" });
  const apiUrl = await urlForEngine(api.url);
  // A made-up key: the double accepts any. claude-bottle keeps it on the host and gives the bottle
  // a placeholder; the raw container gets it as it is.
  const apiKey = `sk-ant-bench-${randomBytes(12).toString("hex")}`;
  const env = { ...setup.env, ANTHROPIC_BASE_URL: apiUrl, ANTHROPIC_API_KEY: apiKey };

  const { spec } = JSON.parse(
    await output(process.execPath, [setup.cliBin, "run", "--backend", "docker", "--dry-run"], {
      env,
      cwd: setup.workspace,
    }),
  );
  const rawHome = join(setup.root, "raw-tui-home");
  await seedRawHome(rawHome, spec.workspace, apiKey, spec.user);
  // Every raw container's name, to remove any that a failed sample leaves behind.
  const rawNames = [];
  const rawArgs = () => {
    const name = `cb-bench-raw-tui-${randomBytes(4).toString("hex")}`;
    rawNames.push(name);
    return withoutLabels(
      bottleRunArgs(new ImageEngine(), {
        spec: {
          ...spec,
          name,
          home: rawHome,
          tty: true,
          stdin: true,
          // What claude-bottle's gateway gives the bottle, minus the proxy (nothing else to reach).
          env: {
            ...spec.env,
            ANTHROPIC_BASE_URL: apiUrl,
            ANTHROPIC_API_KEY: apiKey,
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
          },
        },
        image: setup.imageRef,
        network: "bridge",
      }),
    );
  };
  const commands = {
    "claude-bottle run (TUI)": () => [process.execPath, setup.cliBin, "run", "--backend", "docker"],
    "raw docker run -it claude (TUI)": () => ["docker", ...rawArgs()],
  };

  // A tmux server of our own, its socket in the run's folder, so no one else's sessions are
  // touched and nothing of it outlives the run. One idle session keeps it up between samples.
  const terminal = new Terminal(
    join(setup.root, "tmux.sock"),
    env,
    setup.workspace,
    join(setup.root, "tui-status"),
  );
  await terminal.startServer();
  try {
    log("tui: first start of each side (accepting Claude Code's Bypass Permissions warning once)");
    for (const command of Object.values(commands)) await terminal.sample(command(), { firstRun: true });
    log(
      `tui: ${runs} interleaved runs of ${Object.keys(commands).length} variants (about 5 s each), pane polled every ${pollIntervalMs} ms`,
    );
    const captureMs = [];
    const samples = await interleave(
      Object.fromEntries(
        Object.entries(commands).map(([name, command]) => [
          name,
          async () => {
            const sample = await terminal.sample(command());
            captureMs.push(...sample.captureMs);
            return sample.promptMs;
          },
        ]),
      ),
      { runs, warmup: 0 },
    );
    const [ours, raw] = Object.keys(commands);
    return {
      variants: Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summary(values)])),
      overhead: {
        [`${ours} − ${raw}`]: summary(samples[ours].map((value, i) => value - samples[raw][i])),
      },
      pollIntervalMs,
      // How long one capture took (the resolution is the poll interval plus one of these); the
      // thousands of samples themselves are left out.
      captureMs: (({ samples, ...spread }) => ({ ...spread, count: samples.length }))(summary(captureMs)),
      rawCommand: `docker ${rawArgs().join(" ")}`.replace(apiKey, "<key>"),
    };
  } finally {
    // Ending the panes ended every command; a raw container whose client went first may remain.
    await terminal.stopServer();
    await output("docker", ["rm", "--force", ...rawNames]).catch(() => {});
  }
}

/**
 * The raw side's home: what claude-bottle's `seedClaudeState` writes into a bottle home (onboarding
 * done, the workspace trusted, the key approved by its last 20 characters, as Claude Code records
 * it), here for the raw key, owned by the user the container runs as.
 */
async function seedRawHome(home, workspace, apiKey, user) {
  await mkdir(home, { recursive: true, mode: 0o700 });
  const state = {
    hasCompletedOnboarding: true,
    projects: { [workspace]: { hasTrustDialogAccepted: true } },
    customApiKeyResponses: { approved: [apiKey.slice(-20)], rejected: [] },
  };
  const file = join(home, ".claude.json");
  await writeFile(file, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  if (process.getuid?.() === 0 && user) {
    await chown(home, user.uid, user.gid);
    await chown(file, user.uid, user.gid);
  }
}

function withoutLabels(args) {
  return args.filter((arg, i) => arg !== "--label" && args[i - 1] !== "--label");
}

/** Quote one word for the shell tmux runs a session's command with. */
const quote = (word) => `'${String(word).replaceAll("'", "'\\''")}'`;

/**
 * A private tmux server and one pane per sample. tmux is spawned for every call rather than driven
 * through its control mode: a capture costs a few ms, well inside the poll interval.
 */
class Terminal {
  constructor(socket, env, cwd, statusDir) {
    this.socket = socket;
    this.env = env;
    this.cwd = cwd;
    this.statusDir = statusDir;
  }

  tmux(args) {
    return output("tmux", ["-S", this.socket, "-f", "/dev/null", ...args], { env: this.env, cwd: this.cwd });
  }

  async startServer() {
    await mkdir(this.statusDir, { recursive: true });
    await this.tmux(["new-session", "-d", "-s", "idle", "-x", "120", "-y", "40", "sleep 86400"]);
    // A pane whose command ended stays, so its last screen can be shown when something failed.
    await this.tmux(["set-option", "-g", "remain-on-exit", "on"]);
  }

  async stopServer() {
    await this.tmux(["kill-server"]).catch(() => {});
  }

  /**
   * Start `command` in a new 120 × 40 pane and resolve with the ms until the prompt shows (and the
   * time each capture took), after leaving the TUI and waiting for the command to end. On a first
   * run, Claude Code's Bypass Permissions warning is accepted as a person would (Down, Enter); in a
   * measured run it means the side is not warm, and the sample fails.
   */
  async sample(command, { firstRun = false } = {}) {
    const name = `s-${randomBytes(4).toString("hex")}`;
    // The shell around the command writes its exit status to a file: tmux (3.3) marks a pane dead
    // as soon as its terminal closes but does not always learn the status.
    const statusFile = join(this.statusDir, name);
    const line = `cd ${quote(this.cwd)} && ${command.map(quote).join(" ")}; echo $? > ${quote(statusFile)}`;
    const ended = () =>
      readFile(statusFile, "utf8").then(
        (text) => text.trim() || undefined,
        () => undefined,
      );
    const captureMs = [];
    let screen = "";
    let lastKey = Number.NEGATIVE_INFINITY;
    const started = now();
    await this.tmux(["new-session", "-d", "-s", name, "-x", "120", "-y", "40", line]);
    try {
      let promptMs;
      for (let tick = 1; promptMs === undefined; tick++) {
        const before = now();
        screen = await this.tmux(["capture-pane", "-p", "-t", name]);
        const after = now();
        captureMs.push(after - before);
        if (promptMarker.test(screen)) promptMs = after - started;
        else if (bypassWarning.test(screen)) {
          if (!firstRun)
            throw new Error(`Claude Code asked again to accept Bypass Permissions mode:\n${screen}`);
          // Move to "Yes, I accept", then confirm once the screen shows it chosen: a key sent
          // before the dialog reads input is lost, and Enter on the default ("No, exit") quits.
          if (after > lastKey + 1000) {
            const key = acceptChosen.test(screen) ? "Enter" : "Down";
            await this.tmux(["send-keys", "-t", name, key]);
            lastKey = now();
          }
        } else if (await ended()) {
          throw new Error(
            `${command.join(" ")} exited ${await ended()} before Claude Code showed its prompt:\n${screen}`,
          );
        }
        if (promptMs === undefined && after - started > promptTimeoutMs) {
          throw new Error(
            `no prompt after ${promptTimeoutMs / 1000} s from ${command.join(" ")}:\n${screen}`,
          );
        }
        // Poll on a fixed cadence from the start, so a slow capture does not shift later ones.
        await sleep(Math.max(0, started + tick * pollIntervalMs - now()));
      }

      // Leave the TUI with /exit and wait until the command has ended, with status 0.
      const deadline = now() + exitTimeoutMs;
      let sent = Number.NEGATIVE_INFINITY;
      for (;;) {
        const status = await ended();
        if (status === "0") break;
        if (status !== undefined) {
          screen = await this.tmux(["capture-pane", "-p", "-t", name]);
          throw new Error(`${command.join(" ")} exited ${status}:\n${screen}`);
        }
        // The prompt may take input a moment after it is drawn: say it again every few seconds.
        if (now() > sent + 5000) {
          await this.tmux(["send-keys", "-t", name, "-l", "/exit"]);
          await this.tmux(["send-keys", "-t", name, "Enter"]);
          sent = now();
        }
        if (now() > deadline) {
          screen = await this.tmux(["capture-pane", "-p", "-t", name]);
          throw new Error(`${command.join(" ")} did not end after /exit:\n${screen}`);
        }
        await sleep(100);
      }
      return { promptMs, captureMs };
    } finally {
      await this.tmux(["kill-session", "-t", `=${name}`]).catch(() => {});
    }
  }
}
