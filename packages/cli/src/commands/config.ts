import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { validateBackendOptions } from "../backend-loader.js";
import { sharedOptionsOf } from "../bottle-setup.js";
import { type Io, printJson, table } from "../io.js";
import { configDirOf, describeTrust, howToTrust, validate } from "../settings.js";
import { settingsFor, workspaceOf } from "./shared.js";

/** `https://user:secret@gateway/` → `https://***@gateway/`: config output never shows credentials. */
export function redact(value: unknown): unknown {
  if (typeof value === "string") return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/i, "$1***@");
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v)]));
  return value;
}

function valueAt(config: Record<string, unknown>, key: string): unknown {
  return key
    .split(".")
    .reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], config);
}

export async function configCommand(
  io: Io,
  options: { workspace?: string; json?: boolean },
): Promise<number> {
  // An untrusted project config is shown as such, and its values left out, as a run would refuse it.
  const settings = await settingsFor(io, options, { untrusted: "skip", warn: false });
  const config = redact(settings.config) as Record<string, unknown>;
  if (options.json) {
    printJson(io, {
      config,
      sources: settings.sources,
      files: settings.files,
      ...(settings.projectTrust && { projectTrust: settings.projectTrust }),
    });
    return 0;
  }
  const keys = Object.keys(settings.sources).sort();
  const rows = keys.map((key) => [
    key,
    JSON.stringify(valueAt(config, key.replace(/ \+ --allow$/, ""))),
    settings.sources[key] ?? "",
  ]);
  io.stdout.write(`${table([["KEY", "VALUE", "FROM"], ...rows])}\n`);
  io.stdout.write(
    `\nconfig files: project ${settings.files.project ?? "(none found)"}, user ${settings.files.user ?? "(none)"}\n`,
  );
  const { project } = settings.files;
  if (project && settings.projectTrust) {
    io.stdout.write(
      settings.projectTrust.state === "trusted"
        ? `project config: trusted\n`
        : `project config: NOT APPLIED, ${describeTrust(project, settings.projectTrust)}; ${howToTrust}\n`,
    );
  }
  return 0;
}

export async function validateCommand(
  io: Io,
  file: string | undefined,
  options: { workspace?: string },
): Promise<number> {
  if (file) {
    const path = resolve(io.cwd, file);
    let json: unknown;
    try {
      json = JSON.parse(await readFile(path, "utf8"));
    } catch (error) {
      throw new BottleError("INVALID_CONFIG", `${path}: ${(error as Error).message}`, {
        hint: "fix the file and run again",
      });
    }
    const config = validate(json, path);
    for (const [name, backendOptions] of Object.entries(config.backends ?? {})) {
      await validateBackendOptions(name, {
        shared: { image: { kind: "existing" }, cacheDir: "", dataDir: "" },
        options: backendOptions,
        configDir: configDirOf(io.env, io.cwd),
        workspace: workspaceOf(io, options),
        source: path,
      }).catch((error) => {
        throw BottleError.is(error) && error.code === "INVALID_CONFIG"
          ? new BottleError("INVALID_CONFIG", `${path}: ${error.message}`)
          : error;
      });
    }
    io.stdout.write(`${path}: valid\n`);
    return 0;
  }
  const settings = await settingsFor(io, options, { untrusted: "skip" });
  for (const [name, backendOptions] of Object.entries(settings.config.backends ?? {})) {
    await validateBackendOptions(name, {
      shared: sharedOptionsOf(settings),
      options: backendOptions,
      configDir: settings.configDir,
      workspace: settings.workspace,
      source: "config",
    });
  }
  const files = [settings.files.project, settings.files.user].filter(Boolean);
  io.stdout.write(
    files.length > 0
      ? `${files.join(", ")}: valid\n`
      : "no config file applies here; the defaults are valid\n",
  );
  return 0;
}
