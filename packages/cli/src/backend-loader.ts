/**
 * Turning a backend name into a Backend. Built-in names map to lazy imports, so a command loads
 * only the backend it uses; any other name is an npm package, checked for shape before use.
 *
 * A third-party package runs on the host with the real credential in reach, so it is never taken
 * from the workspace: the bottle can write the project's node_modules (plant a package, or change
 * an installed one), whatever config named the backend. Packages are resolved from claude-bottle's
 * config folder (`<config dir>/node_modules`, e.g. `npm install --prefix ~/.config/claude-bottle
 * my-backend`) and then from beside claude-bottle's own install (`npm install -g`); a package that
 * resolves into the workspace anyway (claude-bottle itself installed in the project) is refused.
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Backend, BottleError, isBackend, type SharedBackendOptions } from "@claude-bottle/core";
import { builtinBackends, isBuiltinBackend } from "./builtin-backends.js";
import { isInside } from "./path-inside.js";

/** What a backend module looks like: a default-exported factory and, optionally, its options schema. */
export interface BackendModule {
  default?: unknown;
  optionsSchema?: {
    safeParse(input: unknown): {
      success: boolean;
      data?: unknown;
      error?: { issues: { path: PropertyKey[]; message: string }[] };
    };
  };
}

export interface LoadBackendOptions {
  shared: SharedBackendOptions;
  /** The backend's own config section (`backends.<name>`). */
  options: Record<string, unknown>;
  /** claude-bottle's config folder: third-party packages are looked up in its node_modules first. */
  configDir: string;
  /** The folder the bottle can write: a package found in it is never loaded. */
  workspace: string;
  /** Where the backend name came from, for error messages. */
  source: string;
}

export async function loadBackend(name: string, options: LoadBackendOptions): Promise<Backend> {
  const module = await importBackendModule(name, options);
  const factory = module.default;
  if (typeof factory !== "function") {
    throw new BottleError(
      "INVALID_BACKEND",
      `the package "${name}" does not default-export a backend factory`,
      {
        hint: "a backend package's default export must be a function (options) => Backend; see the README's \"Adding a backend\"",
      },
    );
  }
  const backendOptions = parseBackendOptions(module, name, options.options);
  const backend = (factory as (options: unknown) => unknown)({ ...backendOptions, ...options.shared });
  if (!isBackend(backend)) {
    throw new BottleError(
      "INVALID_BACKEND",
      `the package "${name}" returned something that is not a backend`,
      {
        hint: "a Backend has a name and the methods checkAvailability, prepare and run",
      },
    );
  }
  return backend;
}

/** Check `backends.<name>` against the backend's own schema, when it exports one. */
export async function validateBackendOptions(name: string, options: LoadBackendOptions): Promise<void> {
  parseBackendOptions(await importBackendModule(name, options), name, options.options);
}

function parseBackendOptions(module: BackendModule, name: string, options: Record<string, unknown>) {
  if (!module.optionsSchema) return options;
  const parsed = module.optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data as Record<string, unknown>;
  const lines = (parsed.error?.issues ?? []).map(
    (issue) =>
      `backends.${name}${issue.path.length ? `.${issue.path.map(String).join(".")}` : ""}: ${issue.message}`,
  );
  throw new BottleError("INVALID_CONFIG", lines.join("\n"));
}

async function importBackendModule(name: string, options: LoadBackendOptions): Promise<BackendModule> {
  if (isBuiltinBackend(name)) return builtinBackends[name]();
  if (!/^(@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/.test(name)) {
    throw new BottleError("BACKEND_NOT_FOUND", `unknown backend "${name}" (from ${options.source})`, {
      hint: `use ${Object.keys(builtinBackends).join(" or ")}, or the npm package name of a third-party backend`,
    });
  }
  const url = await resolvePackage(name, options.configDir);
  if (!url) {
    throw new BottleError(
      "BACKEND_NOT_FOUND",
      `backend "${name}" (from ${options.source}) is neither built in nor an installed package`,
      {
        hint: `install it beside claude-bottle (npm install -g ${name}) or into its config folder (npm install --prefix ${options.configDir} ${name}), or pick a built-in backend: ${Object.keys(builtinBackends).join(", ")}`,
      },
    );
  }
  const file = fileURLToPath(url);
  if (isInside(file, options.workspace)) {
    throw new BottleError(
      "INVALID_BACKEND",
      `backend "${name}" (from ${options.source}) resolves to ${file}, inside the workspace the bottle can write; claude-bottle does not load it`,
      {
        hint: `install claude-bottle and the backend outside the project (npm install -g claude-bottle ${name})`,
      },
    );
  }
  try {
    return (await import(url)) as BackendModule;
  } catch (error) {
    throw new BottleError(
      "INVALID_BACKEND",
      `the backend package "${name}" failed to load: ${(error as Error).message}`,
      {
        hint: "reinstall it, or check that it is built for Node >= 22 as an ES module",
        cause: error,
      },
    );
  }
}

/**
 * Resolve `name` as an import from claude-bottle's config folder, then from its own install. The
 * resolver (and node:assert, which it loads) is loaded only here: runs on a built-in backend never
 * need it.
 */
async function resolvePackage(name: string, configDir: string): Promise<string | undefined> {
  const { resolve: resolveImport } = await import("import-meta-resolve");
  for (const parent of [pathToFileURL(join(configDir, "noop.js")).href, import.meta.url]) {
    try {
      return resolveImport(name, parent);
    } catch {
      // Not found from here; CommonJS-only packages are found by require's resolution instead.
      try {
        return pathToFileURL(createRequire(new URL(parent)).resolve(name)).href;
      } catch {}
    }
  }
  return undefined;
}
