import { resolve } from "node:path";
import type { Backend } from "@claude-bottle/core";
import { loadBackend } from "../backend-loader.js";
import { sharedOptionsOf } from "../bottle-setup.js";
import type { Io } from "../io.js";
import { type Flags, resolveSettings, type Settings } from "../settings.js";

export interface WorkspaceOptions {
  workspace?: string;
}

export function workspaceOf(io: Io, options: WorkspaceOptions): string {
  return resolve(io.cwd, options.workspace ?? ".");
}

export function settingsFor(io: Io, options: WorkspaceOptions & Flags): Promise<Settings> {
  return resolveSettings({
    cwd: workspaceOf(io, options),
    env: io.env,
    flags: { backend: options.backend, image: options.image, allow: options.allow },
  });
}

/** The backend the settings select (or `name`), constructed with its validated options. */
export function backendFor(settings: Settings, name = settings.config.backend): Promise<Backend> {
  return loadBackend(name, {
    shared: sharedOptionsOf(settings),
    options: (settings.config.backends?.[name] as Record<string, unknown> | undefined) ?? {},
    projectDir: settings.projectDir,
    source: name === settings.config.backend ? (settings.sources.backend ?? "default") : "the command line",
  });
}
