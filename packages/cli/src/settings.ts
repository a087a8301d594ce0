/**
 * Settings: the config file(s), environment variables and command-line flags, merged into one
 * valid Config with the source of every value. This is the only place that reads config files
 * or claude-bottle's environment variables; everything after it receives typed values.
 *
 * Precedence, first match wins: flag, environment variable, project config
 * (claude-bottle.config.json, searched up from the workspace), user config
 * (<user config dir>/config.json), built-in default.
 *
 * A project config applies only when the user has trusted it (trust-store.ts): the bottle can
 * write one into the workspace, and nearly every key in it decides where the credential goes,
 * what the bottle reaches or what runs on the host.
 */
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { BottleError, defaultAnthropicBaseUrl, defaults } from "@claude-bottle/core";
import { type Config, configSchema } from "@claude-bottle/core/config";
import { defaultPaths } from "@claude-bottle/core/paths";
import { lilconfig } from "lilconfig";
import type { z } from "zod";
import { fingerprintOf, type TrustStatus, TrustStore } from "./trust-store.js";

export const projectConfigName = "claude-bottle.config.json";

/**
 * Options for a schema's `safeParse` in a command, which validates each schema once or twice: on
 * the first parse of an object schema zod otherwise compiles a parser for it (new Function), which
 * pays off only over many parses; for a few it costs more than it saves (about 4 ms of a warm run).
 */
export const parseOnce = { jitless: true } as const;

/** Environment variables that override a config key. */
export const envOverrides = {
  CLAUDE_BOTTLE_BACKEND: "backend",
  CLAUDE_BOTTLE_IMAGE: "image.ref",
  CLAUDE_BOTTLE_BASE_IMAGE: "image.base",
  CLAUDE_BOTTLE_CLAUDE_CODE_VERSION: "claudeCode.version",
  ANTHROPIC_BASE_URL: "anthropic.baseUrl",
  NODE_EXTRA_CA_CERTS: "tls.extraCaCerts",
  CLAUDE_BOTTLE_CACHE_DIR: "cacheDir",
  CLAUDE_BOTTLE_DATA_DIR: "dataDir",
  CLAUDE_BOTTLE_NETWORK: "network.mode",
  CLAUDE_BOTTLE_CREDENTIAL_STORE: "credentials.store",
} as const;

/**
 * claude-bottle's config folder: the user config, the trust store and third-party backends.
 * Only the environment or the platform default say where it is, never a config file, since it is
 * what decides which config files are trusted.
 */
export function configDirOf(env: NodeJS.ProcessEnv, cwd: string): string {
  const fromEnv = env.CLAUDE_BOTTLE_CONFIG_DIR;
  return fromEnv ? resolve(cwd, fromEnv) : defaultPaths().configDir;
}

/** Config keys whose values are file paths, resolved against the folder of the file that set them. */
const pathKeys = new Set(["image.dockerfile", "image.context", "tls.extraCaCerts", "cacheDir", "dataDir"]);

/** Values used when nothing sets a key. */
export function builtinDefaults(): Record<string, unknown> {
  const paths = defaultPaths();
  return {
    backend: defaults.backend,
    "image.ref": defaults.imageRef,
    "image.base": defaults.baseImage,
    "claudeCode.version": defaults.claudeCodeVersion,
    "anthropic.baseUrl": defaultAnthropicBaseUrl,
    cacheDir: paths.cacheDir,
    dataDir: paths.dataDir,
    "resources.cpus": defaults.resources.cpus,
    "resources.memoryMiB": defaults.resources.memoryMiB,
    "resources.pids": defaults.resources.pids,
    "network.mode": "allowlist",
    "network.allow": [],
    "network.presets": [],
    "network.hostPorts": [],
    "network.publish": [],
    "credentials.passthrough": false,
    "git.protect": true,
    "credentials.store": "auto",
  };
}

export interface Flags {
  backend?: string | undefined;
  image?: string | undefined;
  allow?: string[] | undefined;
  /** `--allow-host-port`: ports of this machine's services the bottle may reach (added to network.hostPorts). */
  allowHostPort?: string[] | undefined;
  /** `--publish`: PORT[:HOSTPORT] entries (added to network.publish). */
  publish?: string[] | undefined;
}

export interface Settings {
  /** The merged, valid config (paths absolute). */
  config: Config & Required<Pick<Config, "backend" | "cacheDir" | "dataDir">>;
  /** For each dotted key that has a value: where it came from. */
  sources: Record<string, string>;
  /** The config files that were read. */
  files: { project?: string; user?: string };
  /** The project config's trust; absent when there is no project config. */
  projectTrust?: TrustStatus;
  /** The folder the bottle mounts read-write (where the search for a project config started). */
  workspace: string;
  /** claude-bottle's config folder (user config, trust store, third-party backends). */
  configDir: string;
}

interface Layer {
  /** Flat dotted keys → values. */
  values: Record<string, unknown>;
  /** Where a key's value came from, for `claude-bottle config`. */
  sourceOf(key: string): string;
}

export interface ResolveOptions {
  /** Where to start searching for a project config (the workspace). */
  cwd: string;
  env: NodeJS.ProcessEnv;
  flags?: Flags;
  /** claude-bottle's config folder (default: the platform's, e.g. ~/.config/claude-bottle). */
  configDir?: string;
  /**
   * What to do with a project config the user has not trusted (or that changed since): refuse it
   * with an error (the default, for everything that builds or runs), or leave it out of the
   * settings and report it in `projectTrust` (for commands that only show or list things).
   */
  untrusted?: "refuse" | "skip";
}

export async function resolveSettings(options: ResolveOptions): Promise<Settings> {
  const layers: Layer[] = [{ values: builtinDefaults(), sourceOf: () => "default" }];
  const files: Settings["files"] = {};

  const configDir = options.configDir ?? defaultPaths().configDir;
  const userFile = join(configDir, "config.json");
  const user = await readConfigFile(userFile, { optional: true });
  if (user) {
    files.user = userFile;
    layers.push({ values: flatten(user, dirname(userFile)), sourceOf: () => userFile });
  }

  let projectTrust: TrustStatus | undefined;
  const project = await findProjectConfig(options.cwd);
  if (project) {
    files.project = project.path;
    projectTrust = await new TrustStore(configDir).status(project.path, await project.fingerprint());
    if (projectTrust.state === "trusted") {
      layers.push({ values: project.values, sourceOf: () => project.path });
    } else if (options.untrusted !== "skip") {
      throw untrustedError(project.path, projectTrust);
    }
  }

  layers.push(envLayer(options.env, options.cwd));
  if (options.flags) layers.push(flagLayer(options.flags));

  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const rank: Record<string, number> = {};
  layers.forEach((layer, index) => {
    for (const [key, value] of Object.entries(layer.values)) {
      if (value === undefined) continue;
      values[key] = value;
      sources[key] = layer.sourceOf(key);
      rank[key] = index;
    }
  });
  // A finished image (`--image`, image.use) replaces whatever lower layers said about building one.
  for (const key of ["image.base", "image.dockerfile", "image.context"]) {
    if (values["image.use"] !== undefined && (rank[key] ?? -1) < (rank["image.use"] ?? -1)) {
      delete values[key];
      delete sources[key];
    }
  }
  if (options.flags?.allow?.length) {
    const allow = [...((values["network.allow"] as string[]) ?? []), ...options.flags.allow];
    values["network.allow"] = allow;
    sources["network.allow"] = `${sources["network.allow"]} + --allow`;
  }
  if (options.flags?.allowHostPort?.length) {
    const ports = options.flags.allowHostPort.map(Number);
    values["network.hostPorts"] = [
      ...new Set([...((values["network.hostPorts"] as number[]) ?? []), ...ports]),
    ];
    sources["network.hostPorts"] = sources["network.hostPorts"]
      ? `${sources["network.hostPorts"]} + --allow-host-port`
      : "flag --allow-host-port";
  }
  if (options.flags?.publish?.length) {
    values["network.publish"] = [
      ...((values["network.publish"] as unknown[]) ?? []),
      ...options.flags.publish,
    ];
    sources["network.publish"] = sources["network.publish"]
      ? `${sources["network.publish"]} + --publish`
      : "flag --publish";
  }
  const config = validate(unflatten(values), "the merged settings") as Settings["config"];
  return {
    config,
    sources,
    files,
    ...(projectTrust && { projectTrust }),
    workspace: options.cwd,
    configDir,
  };
}

export interface ProjectConfig {
  path: string;
  /** The file's settings, flattened, paths absolute. */
  values: Record<string, unknown>;
  /** Its fingerprint now: the bytes that were parsed, and the files they name. */
  fingerprint(): ReturnType<typeof fingerprintOf>;
}

/**
 * The nearest non-empty claude-bottle.config.json from `cwd` up, validated. The text is read once:
 * what is hashed for trust is exactly what is parsed.
 */
export async function findProjectConfig(cwd: string): Promise<ProjectConfig | undefined> {
  const found = await lilconfig("claude-bottle", {
    searchPlaces: [projectConfigName],
    loaders: { ".json": (_path: string, content: string) => content },
  }).search(cwd);
  if (!found || found.isEmpty) return undefined;
  return projectConfigOf(found.filepath, found.config as string);
}

/** A project config file read from `path` (for `claude-bottle trust FILE`). */
export async function readProjectConfig(path: string): Promise<ProjectConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new BottleError("INVALID_CONFIG", `${path}: cannot be read (${(error as Error).message})`);
  }
  return projectConfigOf(path, text);
}

function projectConfigOf(path: string, text: string): ProjectConfig {
  const values = flatten(parseConfigText(text, path), dirname(path));
  return { path, values, fingerprint: () => fingerprintOf(text, namedFiles(values)) };
}

/**
 * Files a config names that the host reads into the image build or the bottle. When they sit in
 * the workspace the bottle can rewrite them after the config was trusted, so their content is part
 * of what is trusted. (The rest of a build context is not hashed; see the README.)
 */
function namedFiles(values: Record<string, unknown>): string[] {
  return ["image.dockerfile", "tls.extraCaCerts"]
    .map((key) => values[key])
    .filter((value): value is string => typeof value === "string");
}

/** "not trusted yet", "changed since you trusted it (…)": the state of an untrusted config, in words. */
export function describeTrust(path: string, status: TrustStatus): string {
  if (status.state === "trusted") return "trusted";
  if (status.state === "new") return "not trusted yet";
  const others = status.changed.filter((file) => file !== path);
  return others.length === 0
    ? "changed since you trusted it"
    : `changed since you trusted it (${others.join(", ")})`;
}

export const howToTrust =
  "review it (the bottle can write files in your project), then run `claude-bottle trust` to use it";

function untrustedError(path: string, status: TrustStatus): BottleError {
  return new BottleError("INVALID_CONFIG", `${path}: ${describeTrust(path, status)}; ${howToTrust}`);
}

async function readConfigFile(
  path: string,
  { optional }: { optional: boolean },
): Promise<Config | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (optional && (error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new BottleError("INVALID_CONFIG", `${path}: cannot be read (${(error as Error).message})`);
  }
  return parseConfigText(text, path);
}

function parseConfigText(text: string, path: string): Config {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new BottleError("INVALID_CONFIG", `${path}: not valid JSON: ${(error as Error).message}`, {
      hint: "fix the file's syntax",
    });
  }
  return validate(json, path);
}

/** Validate one config object; every problem becomes one line naming its place. */
export function validate(
  input: unknown,
  where: string,
  describeKey: (path: string) => string = (p) => p,
): Config {
  const result = configSchema.safeParse(input, parseOnce);
  if (result.success) return result.data;
  throw new BottleError("INVALID_CONFIG", formatIssues(result.error.issues, where, describeKey));
}

export function formatIssues(
  issues: z.core.$ZodIssue[],
  where: string,
  describeKey: (path: string) => string,
): string {
  return issues
    .map((issue) => {
      const path = issue.path.map(String).join(".");
      const place = path ? describeKey(path) : "";
      const message =
        issue.code === "unrecognized_keys"
          ? `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`
          : issue.message;
      return `${where}: ${place ? `${place}: ` : ""}${message}`;
    })
    .join("\n");
}

function envLayer(env: NodeJS.ProcessEnv, cwd: string): Layer {
  const values: Record<string, unknown> = {};
  const variableOf = new Map<string, string>();
  for (const [name, key] of Object.entries(envOverrides)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    values[key] = pathKeys.has(key) ? resolve(cwd, value) : value;
    variableOf.set(key, name);
  }
  const describe = (key: string) => variableOf.get(key) ?? key;
  validate(unflatten(values), "environment", describe);
  return { values, sourceOf: (key) => `env ${describe(key)}` };
}

const flagOf: Record<string, string> = { backend: "--backend", "image.use": "--image" };

function flagLayer(flags: Flags): Layer {
  const values: Record<string, unknown> = { backend: flags.backend, "image.use": flags.image };
  // --allow adds to the allow-list after merging; its entries are checked here, with the flag's name.
  validate({ network: { allow: flags.allow ?? [] } }, "command line", () => "--allow");
  for (const port of flags.allowHostPort ?? []) {
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65_535)
      throw new BottleError("USAGE", `--allow-host-port ${port}: expected a port number from 1 to 65535`, {
        hint: "give the port of the service on this machine, e.g. --allow-host-port 5432",
      });
  }
  validate({ network: { publish: flags.publish ?? [] } }, "command line", () => "--publish");
  const describe = (key: string) => flagOf[key] ?? key;
  validate(unflatten(values), "command line", describe);
  return { values, sourceOf: (key) => `flag ${describe(key)}` };
}

/** `{ image: { base: "x" } }` → `{ "image.base": "x" }`, with relative paths made absolute. */
function flatten(config: Config, baseDir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (value: unknown, prefix: string) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) walk(inner, prefix ? `${prefix}.${key}` : key);
    } else if (prefix !== "$schema") {
      const relative = pathKeys.has(prefix) && typeof value === "string" && !isAbsolute(value);
      out[prefix] = relative ? resolve(baseDir, value) : value;
    }
  };
  walk(config, "");
  return out;
}

function unflatten(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const parts = key.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts.at(-1)!] = value;
  }
  return out;
}
