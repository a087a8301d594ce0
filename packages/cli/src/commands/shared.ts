import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "@claude-bottle/core";
import { loadBackend } from "../backend-loader.js";
import { sharedOptionsOf } from "../bottle-setup.js";
import { builtinBackends } from "../builtin-backends.js";
import type { Io } from "../io.js";
import { isInside, realPath } from "../path-inside.js";
import {
  configDirOf,
  describeTrust,
  type Flags,
  howToTrust,
  resolveSettings,
  type Settings,
} from "../settings.js";

export interface WorkspaceOptions {
  workspace?: string;
}

export function workspaceOf(io: Io, options: WorkspaceOptions): string {
  return resolve(io.cwd, options.workspace ?? ".");
}

/**
 * The settings for a command. An untrusted project config is refused by default; commands that
 * only show or list things pass `untrusted: "skip"` and get the settings without it, with a warning.
 */
export async function settingsFor(
  io: Io,
  options: WorkspaceOptions & Flags,
  { untrusted = "refuse", warn = true }: { untrusted?: "refuse" | "skip"; warn?: boolean } = {},
): Promise<Settings> {
  const settings = await resolveSettings({
    cwd: workspaceOf(io, options),
    env: io.env,
    flags: {
      backend: options.backend,
      image: options.image,
      allow: options.allow,
      allowHostPort: options.allowHostPort,
      publish: options.publish,
    },
    configDir: configDirOf(io.env, io.cwd),
    untrusted,
  });
  if (untrusted === "refuse") warnIfInstalledIn(io, settings.workspace);
  const { project } = settings.files;
  if (warn && project && settings.projectTrust && settings.projectTrust.state !== "trusted") {
    io.stderr.write(
      `claude-bottle: warning: ignoring ${project}: ${describeTrust(project, settings.projectTrust)}; ${howToTrust}\n`,
    );
  }
  return settings;
}

/** The backend the settings select (or `name`), constructed with its validated options. */
export function backendFor(settings: Settings, name = settings.config.backend): Promise<Backend> {
  return loadBackend(name, {
    shared: sharedOptionsOf(settings),
    options: (settings.config.backends?.[name] as Record<string, unknown> | undefined) ?? {},
    workspace: settings.workspace,
    configDir: settings.configDir,
    source: name === settings.config.backend ? (settings.sources.backend ?? "default") : "the command line",
  });
}

/**
 * The backends, built-in and configured, that can do something (list bottles, keep a cache):
 * what `ps`, `stop` and `cache` work with. One that cannot be loaded is left out.
 */
export async function backendsThat(
  settings: Settings,
  can: (backend: Backend) => boolean,
): Promise<Backend[]> {
  const names = [...new Set([...Object.keys(builtinBackends), settings.config.backend])];
  const backends: Backend[] = [];
  for (const name of names) {
    const backend = await backendFor(settings, name).catch(() => undefined);
    if (backend && can(backend)) backends.push(backend);
  }
  return backends;
}

/**
 * claude-bottle run from the project's own node_modules (`npx claude-bottle` with it as a dev
 * dependency) is code the bottle can rewrite, and the host runs it next time. That is the user's
 * choice to make, so it is a warning, said once per command that uses the project's settings.
 */
function warnIfInstalledIn(io: Io, workspace: string, self = fileURLToPath(import.meta.url)): void {
  if (!isInside(self, workspace)) return;
  io.stderr.write(
    `claude-bottle: warning: claude-bottle runs from ${dirname(realPath(self))}, inside the workspace the bottle can change; install it outside the project (npm install -g claude-bottle)\n`,
  );
}
