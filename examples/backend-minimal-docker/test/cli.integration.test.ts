// The example as a user installs it: linked into a claude-bottle config folder's node_modules (as
// `npm install --prefix <config dir>` would put it) and picked with `--backend <package name>` by
// the built claude-bottle CLI. The CLI checks the backend's declared capabilities before it starts
// anything: with credentials.passthrough the run goes ahead (and says the credential is inside);
// without it, a credential in the environment makes `run` refuse, since this backend cannot keep
// it outside the bottle.
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, readFile, realpath, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { capabilityGaps, passthroughWarning, runSpecSchema } from "@claude-bottle/core";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import minimalDocker from "../src/index.js";

const packageName = "claude-bottle-example-backend";
const exampleDir = fileURLToPath(new URL("..", import.meta.url));
const cliBin = join(
  dirname(createRequire(import.meta.url).resolve("claude-bottle/package.json")),
  "dist/bin.js",
);
const imageRef = process.env.CLAUDE_BOTTLE_BASE_IMAGE ?? "node:24-bookworm-slim";
/** Not a real key; the shape claude-bottle recognises. */
const apiKey = `sk-ant-api03-example-${randomBytes(12).toString("hex")}`;
/** As root, the agent runs as the workspace's owner: make that a regular user, as in a real project. */
const owner =
  process.getuid?.() === 0 ? { uid: 4242, gid: 4343 } : { uid: process.getuid!(), gid: process.getgid!() };

describe("the example backend, installed in claude-bottle's config folder", () => {
  let root: string;
  let configDir: string;
  let workspace: string;

  beforeAll(async () => {
    root = await realpath(await mkdtemp(join(tmpdir(), "cb-example-cli-")));
    configDir = join(root, "config");
    workspace = join(root, "project");
    await mkdir(join(configDir, "node_modules"), { recursive: true });
    await symlink(exampleDir, join(configDir, "node_modules", packageName), "dir");
    await mkdir(workspace);
    if (process.getuid?.() === 0) await chown(workspace, owner.uid, owner.gid);
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** `claude-bottle ARGS` in the workspace, with `config` as the user config and a key in the environment. */
  async function claudeBottle(args: string[], config: object, env: Record<string, string | undefined> = {}) {
    await writeFile(join(configDir, "config.json"), JSON.stringify(config));
    return execa("node", [cliBin, ...args], {
      cwd: workspace,
      reject: false,
      stdin: "ignore",
      env: {
        CLAUDE_BOTTLE_CONFIG_DIR: configDir,
        CLAUDE_BOTTLE_DATA_DIR: join(root, "data"),
        CLAUDE_BOTTLE_CACHE_DIR: join(root, "cache"),
        ANTHROPIC_API_KEY: apiKey,
        CLAUDE_CODE_OAUTH_TOKEN: undefined,
        CLAUDE_BOTTLE_BACKEND: undefined,
        CLAUDE_BOTTLE_IMAGE: undefined,
        ...env,
      },
    });
  }

  it("runs a command in the bottle with credentials.passthrough and network open: exit code, file owner", async () => {
    const script =
      'id -u > made-in-bottle; [ "$ANTHROPIC_API_KEY" = "$1" ] || exit 9; [ "$(pwd)" = "$2" ] || exit 8; exit 7';
    const result = await claudeBottle(
      [
        "shell",
        "--backend",
        packageName,
        "--image",
        imageRef,
        "--",
        "sh",
        "-c",
        script,
        "sh",
        apiKey,
        workspace,
      ],
      { credentials: { passthrough: true } },
      { CLAUDE_BOTTLE_NETWORK: "open" },
    );
    expect(result.stderr).toContain(passthroughWarning);
    expect(result.exitCode, result.stderr).toBe(7);
    const made = join(workspace, "made-in-bottle");
    expect((await readFile(made, "utf8")).trim()).toBe(String(owner.uid));
    const { uid, gid } = await stat(made);
    expect({ uid, gid }).toEqual(owner);
    expect(`${result.stdout}${result.stderr}`).not.toContain(apiKey);
  });

  it("refuses a credential it cannot keep outside the bottle, in core's one line, exit 2", async () => {
    const expected = capabilityGaps(
      minimalDocker({ dockerPath: "docker", image: { kind: "existing" }, cacheDir: root, dataDir: root }),
      runSpecSchema.parse({
        workspace,
        home: root,
        command: ["true"],
        name: "probe",
        secrets: { ANTHROPIC_API_KEY: apiKey },
        network: { mode: "open" },
      }),
    ).refusal;
    expect(expected?.message).toContain("cannot keep your credential outside the bottle");
    const result = await claudeBottle(
      ["shell", "--backend", packageName, "--image", imageRef, "--", "sh", "-c", "touch should-not-exist"],
      {},
      { CLAUDE_BOTTLE_NETWORK: "open" },
    );
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe(`claude-bottle: ${expected?.message}; ${expected?.hint}`);
    await expect(stat(join(workspace, "should-not-exist"))).rejects.toThrow();
  });

  it("refuses the default allow-list, which it cannot hold, exit 2", async () => {
    const result = await claudeBottle(
      ["shell", "--backend", packageName, "--image", imageRef, "--", "sh", "-c", "touch should-not-exist"],
      { credentials: { passthrough: true } },
    );
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(
      /^claude-bottle: the minimal-docker backend cannot hold the network allow-list;/,
    );
    await expect(stat(join(workspace, "should-not-exist"))).rejects.toThrow();
  });
});
