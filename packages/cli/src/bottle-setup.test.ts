import { execFileSync } from "node:child_process";
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  agentIdentity,
  bottleNameFor,
  buildRunSpec,
  ensureProjectHome,
  importHostClaudeConfig,
  projectHome,
  projectSlug,
  seedClaudeState,
  sharedOptionsOf,
} from "./bottle-setup.js";
import { resolveSettings } from "./settings.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-setup-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

const settingsFor = (env: NodeJS.ProcessEnv = {}) =>
  resolveSettings({
    cwd: root,
    env: { CLAUDE_BOTTLE_DATA_DIR: join(root, "data"), ...env },
    configDir: `${root}-no-config`, // outside the workspace, and absent
  });

describe("projectSlug and projectHome", () => {
  it("makes a name-safe slug and a per-workspace home", () => {
    expect(projectSlug("/home/ann/My Project!")).toBe("my-project");
    expect(projectSlug("/srv/---")).toBe("project");
    const a = projectHome("/data", "/home/ann/app");
    const b = projectHome("/data", "/home/bob/app");
    expect(a).toMatch(/^\/data\/projects\/app-[0-9a-f]{8}\/home$/);
    expect(a).not.toBe(b);
    expect(projectHome("/data", "/home/ann/app")).toBe(a);
  });
});

describe("agentIdentity", () => {
  const owned = (uid: number, gid: number) => async () => ({ uid, gid });
  it("is the invoking user, or for root the workspace's owner, root only on root's own folder", async () => {
    expect(await agentIdentity("/w", { uid: 501, gid: 20 }, owned(0, 0))).toEqual({ uid: 501, gid: 20 });
    expect(await agentIdentity("/w", { uid: 0, gid: 0 }, owned(1000, 1000))).toEqual({
      uid: 1000,
      gid: 1000,
    });
    expect(await agentIdentity("/w", { uid: 0, gid: 0 }, owned(0, 0))).toEqual({ uid: 0, gid: 0 });
    expect(await agentIdentity("/w", { uid: 0, gid: 0 }, owned(0, 50))).toEqual({ uid: 0, gid: 50 });
    expect(await agentIdentity("/w", undefined, owned(1000, 1000))).toBeUndefined();
  });
});

describe("buildRunSpec", () => {
  const build = async (terminal: { stdin: boolean; stdout: boolean }, env: NodeJS.ProcessEnv = {}) =>
    buildRunSpec({
      settings: await settingsFor(),
      workspace: root,
      command: ["claude", "-p", "hi"],
      env: {
        TERM: "xterm-kitty",
        ANTHROPIC_API_KEY: "sk-1",
        HOME: "/root",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
        ANTHROPIC_MODEL: "m",
        ...env,
      },
      terminal,
      identity: { uid: 1234, gid: 99 },
    });

  it("makes git's executable files read-only unless git.protect is false", async () => {
    await execa("git", ["init", "-q"], { cwd: root });
    const spec = await build({ stdin: false, stdout: false });
    expect(spec.readOnlyPaths).toEqual([join(root, ".git", "config"), join(root, ".git", "hooks")]);

    // The user config sits outside the workspace: a config folder the bottle could reach is refused.
    const configDir = await mkdtemp(join(tmpdir(), "cb-setup-config-"));
    await writeFile(join(configDir, "config.json"), JSON.stringify({ git: { protect: false } }));
    const settings = await resolveSettings({
      cwd: root,
      env: { CLAUDE_BOTTLE_DATA_DIR: join(root, "data") },
      configDir,
    }).finally(() => rm(configDir, { recursive: true, force: true }));
    const unprotected = await buildRunSpec({
      settings,
      workspace: root,
      command: ["sh"],
      env: {},
      terminal: { stdin: false, stdout: false },
      identity: undefined,
    });
    expect(unprotected.readOnlyPaths).toEqual([]);
  });

  it("mounts a linked worktree's common git dir at its own path, its config and hooks read-only", async () => {
    const main = join(root, "main");
    await mkdir(main);
    const git = (cwd: string, ...args: string[]) => execa("git", args, { cwd });
    await git(main, "init", "-q");
    await git(main, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "a");
    const worktree = join(root, "wt");
    await git(main, "worktree", "add", "-q", worktree);
    const spec = await buildRunSpec({
      settings: await settingsFor(),
      workspace: worktree,
      command: ["sh"],
      env: {},
      terminal: { stdin: false, stdout: false },
      identity: undefined,
    });
    const common = join(main, ".git");
    expect(spec.mounts).toEqual([{ source: common, target: common, readOnly: false }]);
    expect(spec.readOnlyPaths).toEqual([
      join(common, "config"),
      join(common, "hooks"),
      join(common, "worktrees", "wt", "commondir"),
      join(common, "worktrees", "wt", "gitdir"),
      join(worktree, ".git"),
    ]);
  });

  it("gives a TTY only when both stdin and stdout are terminals", async () => {
    expect(await build({ stdin: true, stdout: true })).toMatchObject({
      tty: true,
      stdin: true,
      env: { TERM: "xterm-kitty" },
    });
    expect(await build({ stdin: true, stdout: false })).toMatchObject({ tty: false, stdin: false });
    expect(await build({ stdin: false, stdout: false })).toMatchObject({ tty: false, stdin: true });
  });

  it("separates secrets from env and passes only Claude Code's own variables", async () => {
    const spec = await build({ stdin: false, stdout: false });
    expect(spec.secrets).toEqual({ ANTHROPIC_API_KEY: "sk-1" });
    expect(spec.env).toEqual({ CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", ANTHROPIC_MODEL: "m" });
    expect(spec.user).toEqual({ uid: 1234, gid: 99 });
    expect(spec.resources).toEqual({ cpus: 2, memoryMiB: 4096, pids: 1024 });
    expect(await stat(spec.home).catch(() => "absent")).toBe("absent");
    await ensureProjectHome(spec.home);
    expect((await stat(join(spec.home, ".claude"))).isDirectory()).toBe(true);
    expect(spec.deniedLogPath?.startsWith(`${join(spec.home, "..", "logs")}/`)).toBe(true);
    expect((await stat(join(spec.home, "..", "logs"))).isDirectory()).toBe(true);
  });

  it("refuses a workspace that is not a folder", async () => {
    const file = join(root, "file");
    await writeFile(file, "");
    const error = await buildRunSpec({
      settings: await settingsFor(),
      workspace: file,
      command: ["claude"],
      env: {},
      terminal: { stdin: false, stdout: false },
      identity: undefined,
    }).catch((e) => e);
    expect(error.code).toBe("USAGE");
    expect(error.message).toContain("is not a folder");
  });

  it("refuses to mount claude-bottle's config folder: in the workspace or in an agent home", async () => {
    const specWith = async (configDir: string, dataDir = join(root, "data")) =>
      buildRunSpec({
        settings: await resolveSettings({ cwd: root, env: { CLAUDE_BOTTLE_DATA_DIR: dataDir }, configDir }),
        workspace: root,
        command: ["claude"],
        env: {},
        terminal: { stdin: false, stdout: false },
        identity: undefined,
      });
    await expect(specWith(join(root, ".config", "claude-bottle"))).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: `${root}: holds claude-bottle's config folder ${join(root, ".config", "claude-bottle")}, which the bottle could then rewrite; run claude-bottle in a project folder (or set CLAUDE_BOTTLE_CONFIG_DIR elsewhere)`,
    });
    // The data dir outside the workspace (as by default), the config folder inside its homes.
    const elsewhere = `${root}-elsewhere`;
    const inHome = join(elsewhere, "projects", "x-12345678", "home", ".config", "claude-bottle");
    await expect(specWith(inHome, elsewhere)).rejects.toMatchObject({
      message: expect.stringContaining("where bottles keep their homes"),
    });
    await expect(specWith(`${root}-config`)).resolves.toMatchObject({ workspace: root });
  });
});

describe("bottle names", () => {
  it("maps --name NAME to claude-bottle-<project>-NAME, and makes one up otherwise", () => {
    expect(bottleNameFor("/work/My App", "fix-tests")).toBe("claude-bottle-my-app-fix-tests");
    expect(bottleNameFor("/work/app", "a")).toBe("claude-bottle-app-a");
    expect(bottleNameFor("/work/app", "x".repeat(63))).toBe(`claude-bottle-app-${"x".repeat(63)}`);
    const made = [bottleNameFor("/work/app"), bottleNameFor("/work/app")];
    for (const name of made) expect(name).toMatch(/^claude-bottle-app-[0-9a-f]{6}$/);
    expect(made[0]).not.toBe(made[1]);
  });

  it.each(["", "A", "fix_tests", "-a", "a-", "a.b", "../a", "a/b", "a b", "x".repeat(64), "é"])(
    "refuses --name %j with one line saying what a name may be",
    (given) => {
      let error: unknown;
      try {
        bottleNameFor("/work/app", given);
      } catch (caught) {
        error = caught;
      }
      expect(error).toMatchObject({
        code: "USAGE",
        message: `--name ${JSON.stringify(given)} is not a valid bottle name: use 1 to 63 lower-case letters, digits and hyphens, not starting or ending with a hyphen (e.g. --name fix-tests)`,
      });
    },
  );

  it("gives the spec the name, and each run of a named bottle a denial log of its own", async () => {
    const settings = await settingsFor();
    const build = (now: Date) =>
      buildRunSpec({
        settings,
        workspace: root,
        command: ["claude"],
        env: {},
        terminal: { stdin: false, stdout: false },
        identity: undefined,
        name: "a",
        now,
      });
    const first = await build(new Date("2026-01-02T03:04:05.678Z"));
    const second = await build(new Date("2026-01-02T03:04:06.000Z"));
    const slug = root.split("/").at(-1)!.toLowerCase();
    expect(first.name).toBe(`claude-bottle-${slug}-a`);
    expect(second.name).toBe(first.name);
    expect(first.deniedLogPath).toBe(
      join(first.home, "..", "logs", `claude-bottle-${slug}-a-20260102T030405-678Z.denied.jsonl`),
    );
    expect(second.deniedLogPath).not.toBe(first.deniedLogPath);
    await expect(
      buildRunSpec({
        settings,
        workspace: join(root, "missing"),
        command: ["claude"],
        env: {},
        terminal: { stdin: false, stdout: false },
        identity: undefined,
        name: "Bad_Name",
      }),
    ).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining('--name "Bad_Name"') });
  });
});

describe("sharedOptionsOf", () => {
  it("builds the bundled image on the configured base with the host's extra CA certificates", async () => {
    const options = sharedOptionsOf(
      await settingsFor({ CLAUDE_BOTTLE_BASE_IMAGE: "local/node:24", NODE_EXTRA_CA_CERTS: "/etc/ca.pem" }),
    );
    expect(options.image).toEqual({
      kind: "bundled",
      base: "local/node:24",
      claudeCodeVersion: "2.1.332",
      extraCaCerts: "/etc/ca.pem",
    });
    expect(options).not.toHaveProperty("registryImage");
  });
});

describe("seedClaudeState", () => {
  it("marks onboarding done, trusts the workspace and approves the placeholder key, keeping what is there", async () => {
    const home = join(root, "home");
    await mkdir(home);
    await writeFile(
      join(home, ".claude.json"),
      JSON.stringify({ numStartups: 3, hasCompletedOnboarding: false, projects: { "/other": { x: 1 } } }),
    );
    await seedClaudeState(home, "/work/app");
    await seedClaudeState(home, "/work/app");
    const state = JSON.parse(await readFile(join(home, ".claude.json"), "utf8"));
    expect(state).toEqual({
      numStartups: 3,
      hasCompletedOnboarding: false,
      projects: { "/other": { x: 1 }, "/work/app": { hasTrustDialogAccepted: true } },
      customApiKeyResponses: { approved: ["-placeholder-api-key"], rejected: [] },
    });
    expect((await stat(join(home, ".claude.json"))).mode & 0o777).toBe(0o600);
  });

  it("is safe when several runs of one project seed it at once: one whole file, no leftovers", async () => {
    const home = join(root, "data", "home");
    const runs = Array.from({ length: 12 }, async () => {
      await ensureProjectHome(home);
      return seedClaudeState(home, "/work/app");
    });
    expect(await Promise.all(runs)).toEqual(Array(12).fill(true));
    expect(JSON.parse(await readFile(join(home, ".claude.json"), "utf8"))).toEqual({
      hasCompletedOnboarding: true,
      projects: { "/work/app": { hasTrustDialogAccepted: true } },
      customApiKeyResponses: { approved: ["-placeholder-api-key"], rejected: [] },
    });
    // No half-written temporary file of any run is left beside it.
    expect((await readdir(home)).sort()).toEqual([".claude", ".claude.json"]);
  });

  it("creates the state on first use and leaves a file it cannot parse alone", async () => {
    const fresh = join(root, "fresh");
    await mkdir(fresh);
    await seedClaudeState(fresh, "/w");
    expect(JSON.parse(await readFile(join(fresh, ".claude.json"), "utf8")).hasCompletedOnboarding).toBe(true);
    await writeFile(join(fresh, ".claude.json"), "{ half-written");
    expect(await seedClaudeState(fresh, "/w")).toBe(false);
    expect(await readFile(join(fresh, ".claude.json"), "utf8")).toBe("{ half-written");
  });
});

describe("seedClaudeState: the file is the bottle's, so it is hostile data", () => {
  it("never writes through a link the bottle planted, and leaves the link's target alone", async () => {
    const home = join(root, "home");
    await mkdir(home);
    const outside = join(root, "host-file");
    await writeFile(outside, "the host's own file");
    await symlink(outside, join(home, ".claude.json"));
    expect(await seedClaudeState(home, "/w")).toBe(false);
    expect(await readFile(outside, "utf8")).toBe("the host's own file");
    expect(await readlink(join(home, ".claude.json"))).toBe(outside);
  });

  it("does not hang on a FIFO, and leaves a folder or an oversized file alone", async () => {
    const fifoHome = join(root, "fifo");
    await mkdir(fifoHome);
    execFileSync("mkfifo", [join(fifoHome, ".claude.json")]);
    expect(await seedClaudeState(fifoHome, "/w")).toBe(false);
    const dirHome = join(root, "dir");
    await mkdir(join(dirHome, ".claude.json"), { recursive: true });
    expect(await seedClaudeState(dirHome, "/w")).toBe(false);
    const bigHome = join(root, "big");
    await mkdir(bigHome);
    await writeFile(join(bigHome, ".claude.json"), "{}");
    await truncate(join(bigHome, ".claude.json"), 17 * 1024 * 1024);
    expect(await seedClaudeState(bigHome, "/w")).toBe(false);
    expect((await stat(join(bigHome, ".claude.json"))).size).toBe(17 * 1024 * 1024);
  });

  it("drops __proto__ keys and pollutes nothing", async () => {
    const home = join(root, "home");
    await mkdir(home);
    await writeFile(
      join(home, ".claude.json"),
      '{"__proto__":{"polluted":true},"projects":{"__proto__":{"polluted":true}},"customApiKeyResponses":{"__proto__":{"approved":["x"]}}}',
    );
    expect(await seedClaudeState(home, "/w")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const text = await readFile(join(home, ".claude.json"), "utf8");
    expect(text).not.toContain("__proto__");
    expect(JSON.parse(text).customApiKeyResponses.approved).toEqual(["-placeholder-api-key"]);
  });

  it("leaves a file of the wrong shape alone rather than clobber it", async () => {
    const home = join(root, "home");
    await mkdir(home);
    for (const text of [
      '"a string"',
      "[]",
      '{"projects":"x"}',
      '{"customApiKeyResponses":{"approved":[1]}}',
    ]) {
      await writeFile(join(home, ".claude.json"), text);
      expect(await seedClaudeState(home, "/w"), text).toBe(false);
      expect(await readFile(join(home, ".claude.json"), "utf8")).toBe(text);
    }
  });

  it("replaces the file in one step, leaving no temporary file, and respects a rejection", async () => {
    const home = join(root, "home");
    await mkdir(home);
    await writeFile(
      join(home, ".claude.json"),
      JSON.stringify({ customApiKeyResponses: { approved: [], rejected: ["-placeholder-api-key"] } }),
      { mode: 0o644 },
    );
    expect(await seedClaudeState(home, "/w")).toBe(true);
    expect(await readdir(home)).toEqual([".claude.json"]);
    expect((await lstat(join(home, ".claude.json"))).mode & 0o777).toBe(0o600);
    const state = JSON.parse(await readFile(join(home, ".claude.json"), "utf8"));
    expect(state.customApiKeyResponses).toEqual({ approved: [], rejected: ["-placeholder-api-key"] });
  });
});

describe("importHostClaudeConfig", () => {
  it("copies CLAUDE.md and settings.json from the host's ~/.claude", async () => {
    const hostHome = join(root, "host");
    await mkdir(join(hostHome, ".claude"), { recursive: true });
    await writeFile(join(hostHome, ".claude", "CLAUDE.md"), "be brief");
    const bottleHome = join(root, "bottle");
    expect(await importHostClaudeConfig(bottleHome, undefined, hostHome)).toEqual(["CLAUDE.md"]);
    expect(await readFile(join(bottleHome, ".claude", "CLAUDE.md"), "utf8")).toBe("be brief");
  });

  it("never writes through a .claude link the bottle planted in its home", async () => {
    const hostHome = join(root, "host");
    await mkdir(join(hostHome, ".claude"), { recursive: true });
    await writeFile(join(hostHome, ".claude", "settings.json"), "{}");
    const bottleHome = join(root, "bottle");
    const elsewhere = join(root, "elsewhere");
    await mkdir(bottleHome);
    await mkdir(elsewhere);
    await symlink(elsewhere, join(bottleHome, ".claude"));
    await expect(importHostClaudeConfig(bottleHome, undefined, hostHome)).rejects.toThrow(
      /is not a folder but a link or file left there from inside the bottle/,
    );
    await expect(ensureProjectHome(bottleHome)).rejects.toThrow(/does not write through it/);
    expect(await readdir(elsewhere)).toEqual([]);
  });

  it("replaces a link planted at the file's own name instead of writing through it", async () => {
    const hostHome = join(root, "host");
    await mkdir(join(hostHome, ".claude"), { recursive: true });
    await writeFile(join(hostHome, ".claude", "CLAUDE.md"), "be brief");
    const bottleHome = join(root, "bottle");
    const target = join(root, "target.md");
    await writeFile(target, "untouched");
    await mkdir(join(bottleHome, ".claude"), { recursive: true });
    await symlink(target, join(bottleHome, ".claude", "CLAUDE.md"));
    expect(await importHostClaudeConfig(bottleHome, undefined, hostHome)).toEqual(["CLAUDE.md"]);
    expect(await readFile(target, "utf8")).toBe("untouched");
    expect((await lstat(join(bottleHome, ".claude", "CLAUDE.md"))).isFile()).toBe(true);
    expect(await readFile(join(bottleHome, ".claude", "CLAUDE.md"), "utf8")).toBe("be brief");
  });
});
