// The CLI in-process: argv in, exit code and output out. Third-party backends come from the
// fixture packages in test/fixtures/third-party-project/node_modules.
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { memoryIo } from "../test/memory-io.js";
import { main, version } from "./main.js";

const fixtureModules = fileURLToPath(
  new URL("../test/fixtures/third-party-project/node_modules", import.meta.url),
);
let project: string;
let record: string;

beforeEach(async () => {
  project = await mkdtemp(join(tmpdir(), "cb-cli-"));
  record = join(project, "record.json");
  await symlink(fixtureModules, join(project, "node_modules"));
});
afterEach(() => rm(project, { recursive: true, force: true }));

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const { io, output } = memoryIo({
    cwd: project,
    env: {
      CLAUDE_BOTTLE_DATA_DIR: join(project, ".data"),
      CLAUDE_BOTTLE_CACHE_DIR: join(project, ".cache"),
      ...env,
    },
  });
  const code = await main(argv, io);
  return { code, ...output };
}

const configure = (config: unknown) =>
  writeFile(join(project, "claude-bottle.config.json"), JSON.stringify(config));

describe("claude-bottle", () => {
  it("prints its version and help, exit 0", async () => {
    expect(await cli(["--version"])).toMatchObject({ code: 0, stdout: `${version}\n` });
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const command of ["run", "prepare", "doctor", "backends", "config", "ps", "stop"]) {
      expect(help.stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    }
    const runHelp = await cli(["run", "--help"]);
    expect(runHelp.stdout).toContain("arguments after -- go to Claude Code");
  });

  it("exits 2 with one clear line for usage errors", async () => {
    const unknown = await cli(["bogus"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'bogus'");

    const claudeFlag = await cli(["run", "-p", "hi"]);
    expect(claudeFlag.code).toBe(2);
    expect(claudeFlag.stderr).toContain("unknown option '-p'");
    expect(claudeFlag.stderr).toContain('claude-bottle run -- -p "fix the tests"');

    const stop = await cli(["stop"]);
    expect(stop.code).toBe(2);
    expect(stop.stderr).toBe(
      "claude-bottle: stop needs bottle names or --all; see `claude-bottle ps` for names\n",
    );
  });

  it("exits 2 for an invalid config file, one line per problem with its place", async () => {
    await configure({ network: { mode: "wide" }, resources: { cpus: -1 } });
    const { code, stderr, stdout } = await cli(["run", "--dry-run"]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    const file = join(project, "claude-bottle.config.json");
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^claude-bottle: ${file}: network.mode: .*"allowlist"`)),
        expect.stringMatching(new RegExp(`^claude-bottle: ${file}: resources.cpus: .*>0`)),
      ]),
    );
    const validate = await cli(["config", "validate", "claude-bottle.config.json"]);
    expect(validate.code).toBe(2);
  });

  it("refuses a malformed cache prune", async () => {
    const both = await cli(["cache", "prune", "--all", "--older-than", "7d"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe("claude-bottle: cache prune takes --all or --older-than, not both\n");
    const bad = await cli(["cache", "prune", "--older-than", "a while"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      'claude-bottle: --older-than: "a while" is not a duration; use a number with a unit, e.g. 30m, 12h, 7d\n',
    );
    const empty = await cli(["cache", "ls"]);
    expect(empty).toMatchObject({ code: 0, stdout: "" });
    expect(empty.stderr).toContain("the cache is empty");
  });

  it("validates a good config file", async () => {
    await configure({ backend: "docker", network: { allow: ["*.npmjs.org"] } });
    const { code, stdout } = await cli(["config", "validate"]);
    expect(code).toBe(0);
    expect(stdout).toContain("claude-bottle.config.json: valid");
  });

  it("rejects unknown options in a built-in backend's section", async () => {
    await configure({ backends: { docker: { colour: "blue" } } });
    const { code, stderr } = await cli(["config", "validate"]);
    expect(code).toBe(2);
    expect(stderr).toContain("backends.docker");
  });

  it("runs a third-party backend named in config, passing its options and Claude Code's arguments", async () => {
    await configure({
      backend: "claude-bottle-backend-example",
      backends: { "claude-bottle-backend-example": { recordTo: record, exitCode: 7 } },
    });
    const { code, stdout, stderr } = await cli(["run", "--", "-p", "hello", "--output-format", "json"], {
      ANTHROPIC_API_KEY: "sk-test-secret",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    });
    expect(code).toBe(7);
    expect(stdout).toBe("");
    expect(stderr).toContain("claude-bottle: example step: done in");
    const seen = JSON.parse(await readFile(record, "utf8"));
    expect(seen.options.exitCode).toBe(7);
    expect(seen.prepared).toEqual({ imageRef: "claude-bottle:latest" });
    expect(seen.spec.command).toEqual([
      "claude",
      "--dangerously-skip-permissions",
      "-p",
      "hello",
      "--output-format",
      "json",
    ]);
    expect(seen.spec.workspace).toBe(project);
    expect(seen.spec.secrets).toEqual({ ANTHROPIC_API_KEY: "sk-test-secret" });
    expect(seen.spec.env).toEqual({ CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" });
    expect(seen.spec.home).toMatch(
      new RegExp(`^${join(project, ".data", "projects")}/cb-cli-[^/]+-[0-9a-f]{8}/home$`),
    );
    expect(seen.spec.name).toMatch(/^claude-bottle-cb-cli-[a-z0-9]+-[0-9a-f]{6}$/);
  });

  it("warns about credential passthrough, and lists hosts the bottle was refused", async () => {
    await configure({
      backend: "claude-bottle-backend-example",
      credentials: { passthrough: true },
      network: { presets: ["npm"] },
      backends: {
        "claude-bottle-backend-example": {
          recordTo: record,
          deniedHosts: ["evil.example", "10.1.2.3"],
          warnings: ["the host firewall could not be set up"],
        },
      },
    });
    const { code, stderr } = await cli(["run", "--allow", "pypi.org"]);
    expect(code).toBe(0);
    const seen = JSON.parse(await readFile(record, "utf8"));
    expect(seen.spec.passthroughCredentials).toBe(true);
    expect(seen.spec.network).toEqual({ mode: "allowlist", allow: ["pypi.org"], presets: ["npm"] });
    expect(seen.spec.deniedLogPath).toMatch(/\/logs\/claude-bottle-cb-cli-[^/]+\.denied\.jsonl$/);
    expect(stderr).toContain("claude-bottle: warning: credentials.passthrough is on");
    expect(stderr).toContain("claude-bottle: warning: the host firewall could not be set up\n");
    expect(stderr).toContain(
      `claude-bottle: blocked evil.example, 10.1.2.3 (not on the allow-list; allow with --allow HOST or network.allow; log: ${seen.spec.deniedLogPath})`,
    );
  });

  it("rejects a malformed --allow entry, naming the flag", async () => {
    const { code, stderr } = await cli(["run", "--dry-run", "--allow", "http://x.com/"]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      "claude-bottle: command line: --allow: expected a host name, a *.domain wildcard, an IP address or a CIDR block\n",
    );
  });

  it("validates a third-party backend's options with its own schema", async () => {
    await configure({
      backend: "claude-bottle-backend-example",
      backends: { "claude-bottle-backend-example": { exitCode: "seven" } },
    });
    const { code, stderr } = await cli(["run"]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      "claude-bottle: backends.claude-bottle-backend-example.exitCode: expected an integer\n",
    );
  });

  it.each([
    [
      "not-installed-backend",
      /backend "not-installed-backend" \(from flag --backend\) is neither built in nor an installed package; install it/,
    ],
    ["Not A Name!", /unknown backend "Not A Name!" \(from flag --backend\); use docker or smolmachines/],
    [
      "@acme/bottle-not-a-factory",
      /the package "@acme\/bottle-not-a-factory" does not default-export a backend factory/,
    ],
    ["claude-bottle-backend-wrong-shape", /returned something that is not a backend/],
    ["claude-bottle-backend-broken", /failed to load: this package is broken/],
  ])("explains a bad backend %j and exits 2", async (name, message) => {
    const { code, stderr } = await cli(["run", "--backend", name]);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr.trim().split("\n")).toHaveLength(1);
  });

  it("shows the run with --dry-run and never the secret", async () => {
    const { code, stdout } = await cli(["run", "--dry-run", "--allow", "pypi.org", "--", "-p", "hi"], {
      ANTHROPIC_API_KEY: "sk-ant-very-secret",
      CLAUDE_CODE_OAUTH_TOKEN: "oauth-very-secret",
    });
    expect(code).toBe(0);
    expect(stdout).not.toContain("very-secret");
    const shown = JSON.parse(stdout);
    expect(shown.backend).toBe("docker");
    expect(shown.spec.secrets).toEqual({
      ANTHROPIC_API_KEY: "<redacted>",
      CLAUDE_CODE_OAUTH_TOKEN: "<redacted>",
    });
    expect(shown.spec.network.allow).toEqual(["pypi.org"]);
  });

  it("shows where each setting came from", async () => {
    await configure({ backend: "smolmachines" });
    const { code, stdout } = await cli(["config", "--json"], {
      CLAUDE_BOTTLE_BASE_IMAGE: "local/node:24",
      ANTHROPIC_BASE_URL: "https://user:pw@gw.example/",
    });
    expect(code).toBe(0);
    const { config, sources } = JSON.parse(stdout);
    expect(config.backend).toBe("smolmachines");
    expect(sources.backend).toBe(join(project, "claude-bottle.config.json"));
    expect(sources["image.base"]).toBe("env CLAUDE_BOTTLE_BASE_IMAGE");
    expect(config.anthropic.baseUrl).toBe("https://***@gw.example/");
    expect(stdout).not.toContain("pw@");
  });

  it("lists built-in and configured backends", async () => {
    await configure({ backend: "claude-bottle-backend-example" });
    const { code, stdout } = await cli(["backends", "--json"]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual([
      { name: "docker", kind: "builtin", selected: false },
      { name: "smolmachines", kind: "builtin", selected: false },
      {
        name: "claude-bottle-backend-example",
        kind: "package",
        selected: true,
        source: join(project, "claude-bottle.config.json"),
      },
    ]);
  });

  it("doctor reports each backend and exits by the selected one", async () => {
    await configure({ backend: "claude-bottle-backend-example" });
    const { code, stdout } = await cli(["doctor", "--json"], { PATH: "/nonexistent" });
    expect(code).toBe(0);
    const { checks } = JSON.parse(stdout);
    expect(checks.map((c: { backend: string }) => c.backend)).toEqual([
      "docker",
      "smolmachines",
      "claude-bottle-backend-example",
    ]);
    expect(checks[2]).toMatchObject({ available: true, version: "example 1.0.0", selected: true });
    const smol = checks[1];
    expect(smol.available).toBe(false);
    expect(smol.fix).toBeTruthy();
  });
});
