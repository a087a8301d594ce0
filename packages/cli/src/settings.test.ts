import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { findProjectConfig, resolveSettings } from "./settings.js";
import { TrustStore } from "./trust-store.js";

let root: string;
let project: string;
let userDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-settings-"));
  project = join(root, "work", "project");
  userDir = join(root, "user-config");
  await mkdir(join(project, "src"), { recursive: true });
  await mkdir(userDir, { recursive: true });
});
afterEach(() => rm(root, { recursive: true, force: true }));

const write = (path: string, value: unknown) =>
  writeFile(path, typeof value === "string" ? value : JSON.stringify(value));
/** Trust whatever project config applies at `cwd`, as `claude-bottle trust` does. */
async function trustHere(cwd = project) {
  const found = await findProjectConfig(cwd);
  if (found) await new TrustStore(userDir).trust(found.path, await found.fingerprint());
}

/** The settings at `cwd`; the project config there is trusted first unless `trust: false`. */
async function settings(
  options: {
    env?: NodeJS.ProcessEnv;
    flags?: object;
    cwd?: string;
    trust?: boolean;
    untrusted?: "refuse" | "skip";
  } = {},
) {
  if (options.trust !== false) await trustHere(options.cwd);
  return resolveSettings({
    cwd: options.cwd ?? project,
    env: options.env ?? {},
    flags: options.flags ?? {},
    configDir: userDir,
    ...(options.untrusted && { untrusted: options.untrusted }),
  });
}

describe("resolveSettings", () => {
  it("uses the defaults when nothing is configured", async () => {
    const { config, sources, files } = await settings();
    expect(config.backend).toBe("docker");
    expect(config.image?.base).toBe("node:24-bookworm-slim");
    expect(config.network).toEqual({ mode: "allowlist", allow: [], presets: [], hostPorts: [], publish: [] });
    expect(config.credentials).toEqual({ passthrough: false, store: "auto" });
    expect(sources.backend).toBe("default");
    expect(files).toEqual({});
  });

  it("picks the backend by flag, then env, then project config, then user config, then docker", async () => {
    await write(join(userDir, "config.json"), { backend: "from-user" });
    expect((await settings()).config.backend).toBe("from-user");
    await write(join(root, "work", "claude-bottle.config.json"), { backend: "smolmachines" });
    const fromProject = await settings({ cwd: join(project, "src") });
    expect(fromProject.config.backend).toBe("smolmachines");
    expect(fromProject.sources.backend).toBe(join(root, "work", "claude-bottle.config.json"));
    const fromEnv = await settings({ env: { CLAUDE_BOTTLE_BACKEND: "docker" } });
    expect(fromEnv.sources.backend).toBe("env CLAUDE_BOTTLE_BACKEND");
    const fromFlag = await settings({
      env: { CLAUDE_BOTTLE_BACKEND: "docker" },
      flags: { backend: "smolmachines" },
    });
    expect(fromFlag.config.backend).toBe("smolmachines");
    expect(fromFlag.sources.backend).toBe("flag --backend");
  });

  it("takes the nearest project config up the tree", async () => {
    await write(join(root, "claude-bottle.config.json"), { claudeCode: { version: "1.0.0" } });
    await write(join(project, "claude-bottle.config.json"), { claudeCode: { version: "2.0.0" } });
    const { config, files } = await settings({ cwd: join(project, "src") });
    expect(config.claudeCode?.version).toBe("2.0.0");
    expect(files.project).toBe(join(project, "claude-bottle.config.json"));
  });

  it("lets environment variables override config keys and says so", async () => {
    await write(join(project, "claude-bottle.config.json"), {
      image: { base: "from-file" },
      anthropic: { baseUrl: "https://gw.example/" },
    });
    const { config, sources } = await settings({
      env: {
        CLAUDE_BOTTLE_BASE_IMAGE: "local/node:24",
        ANTHROPIC_BASE_URL: "http://127.0.0.1:9999",
        CLAUDE_BOTTLE_DATA_DIR: "rel/data",
      },
    });
    expect(config.image?.base).toBe("local/node:24");
    expect(sources["image.base"]).toBe("env CLAUDE_BOTTLE_BASE_IMAGE");
    expect(config.anthropic?.baseUrl).toBe("http://127.0.0.1:9999");
    expect(config.dataDir).toBe(join(project, "rel/data"));
  });

  it("resolves paths in a config file against that file's folder", async () => {
    await write(join(project, "claude-bottle.config.json"), {
      image: { dockerfile: "docker/Agent.Dockerfile" },
      cacheDir: "../cache",
    });
    const { config } = await settings({ cwd: join(project, "src") });
    expect(config.image?.dockerfile).toBe(join(project, "docker/Agent.Dockerfile"));
    expect(config.cacheDir).toBe(join(root, "work", "cache"));
  });

  it("adds --allow-host-port and --publish to network.hostPorts and network.publish", async () => {
    await write(join(project, "claude-bottle.config.json"), {
      network: { hostPorts: [5432], publish: [3000, "8000:18000"] },
    });
    const { config, sources } = await settings({
      flags: { allowHostPort: ["6379", "5432"], publish: ["9229"] },
    });
    expect(config.network?.hostPorts).toEqual([5432, 6379]);
    expect(config.network?.publish).toEqual([3000, "8000:18000", "9229"]);
    expect(sources["network.hostPorts"]).toContain("--allow-host-port");
    expect(sources["network.publish"]).toContain("--publish");
  });

  it("refuses a bad --allow-host-port or --publish, naming the flag", async () => {
    await expect(settings({ flags: { allowHostPort: ["70000"] } })).rejects.toThrow(
      "--allow-host-port 70000: expected a port number from 1 to 65535",
    );
    await expect(settings({ flags: { publish: ["3000:x"] } })).rejects.toThrow(
      "command line: --publish: expected PORT or PORT:HOSTPORT, ports from 1 to 65535",
    );
    await write(join(project, "claude-bottle.config.json"), { network: { publish: ["0:1"] } });
    await expect(settings()).rejects.toThrow(/network\.publish\.0: expected PORT or PORT:HOSTPORT/);
  });

  it("adds --allow hosts to the configured allow-list", async () => {
    await write(join(project, "claude-bottle.config.json"), { network: { allow: ["registry.npmjs.org"] } });
    const { config, sources } = await settings({ flags: { allow: ["*.example.com"] } });
    expect(config.network?.allow).toEqual(["registry.npmjs.org", "*.example.com"]);
    expect(sources["network.allow"]).toContain("--allow");
  });

  it("lets --image replace a configured build", async () => {
    await write(join(project, "claude-bottle.config.json"), { image: { dockerfile: "Dockerfile" } });
    const { config } = await settings({ flags: { image: "my/agent:1" } });
    expect(config.image).toEqual({ use: "my/agent:1", ref: "claude-bottle:latest" });
  });

  it("reports every problem in a config file with its file and key, one per line", async () => {
    const file = join(project, "claude-bottle.config.json");
    await write(file, {
      backend: "",
      network: { mode: "wide", allow: ["ok.com", "not a host"] },
      colour: "blue",
    });
    const error = await settings().catch((e) => e);
    expect(error.code).toBe("INVALID_CONFIG");
    const lines = error.message.split("\n");
    expect(lines).toHaveLength(4);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^${file}: backend: `)),
        expect.stringMatching(new RegExp(`^${file}: network.mode: .*allowlist`)),
        `${file}: network.allow.1: expected a host name, a *.domain wildcard, an IP address or a CIDR block`,
        `${file}: unknown key "colour"`,
      ]),
    );
  });

  it("names the file when it is not JSON", async () => {
    await write(join(userDir, "config.json"), "{ backend: docker");
    const error = await settings().catch((e) => e);
    expect(error.code).toBe("INVALID_CONFIG");
    expect(error.message).toMatch(new RegExp(`^${join(userDir, "config.json")}: not valid JSON`));
  });

  it("names the environment variable that is wrong", async () => {
    const error = await settings({
      env: { CLAUDE_BOTTLE_NETWORK: "wide", ANTHROPIC_BASE_URL: "not a url" },
    }).catch((e) => e);
    expect(error.code).toBe("INVALID_CONFIG");
    expect(error.message).toContain("environment: CLAUDE_BOTTLE_NETWORK:");
    expect(error.message).toContain("environment: ANTHROPIC_BASE_URL:");
  });

  it("refuses a project config that is not trusted, or changed since, naming it", async () => {
    const file = join(project, "claude-bottle.config.json");
    await write(file, { anthropic: { baseUrl: "https://attacker.example/" } });
    await expect(settings({ trust: false })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: `${file}: not trusted yet; review it (the bottle can write files in your project), then run \`claude-bottle trust\` to use it`,
    });
    await trustHere();
    await write(file, { anthropic: { baseUrl: "https://attacker.example/v2" } });
    await expect(settings({ trust: false })).rejects.toMatchObject({
      message: expect.stringMatching(new RegExp(`^${file}: changed since you trusted it; `)),
    });
  });

  it("leaves an untrusted project config out when asked to skip it, and says so", async () => {
    await write(join(userDir, "config.json"), { network: { mode: "none" } });
    await write(join(project, "claude-bottle.config.json"), { network: { mode: "open" }, backend: "evil" });
    const skipped = await settings({ trust: false, untrusted: "skip" });
    expect(skipped.config.network?.mode).toBe("none");
    expect(skipped.config.backend).toBe("docker");
    expect(skipped.sources["network.mode"]).toBe(join(userDir, "config.json"));
    expect(skipped.files.project).toBe(join(project, "claude-bottle.config.json"));
    expect(skipped.projectTrust).toEqual({ state: "new" });
  });

  it("still reports a broken project config before asking for trust", async () => {
    await write(join(project, "claude-bottle.config.json"), "{ nope");
    await expect(settings({ trust: false })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringMatching(/claude-bottle\.config\.json: not valid JSON/),
    });
  });
});
