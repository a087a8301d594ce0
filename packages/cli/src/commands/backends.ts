import { builtinBackends, isBuiltinBackend } from "../builtin-backends.js";
import { type Io, printJson, table } from "../io.js";
import { settingsFor } from "./shared.js";

export async function backendsCommand(
  io: Io,
  options: { workspace?: string; json?: boolean },
): Promise<number> {
  const settings = await settingsFor(io, options);
  const selected = settings.config.backend;
  const configured = Object.keys(settings.config.backends ?? {});
  const names = [...new Set([...Object.keys(builtinBackends), selected, ...configured])];
  const rows = names.map((name) => ({
    name,
    kind: isBuiltinBackend(name) ? "builtin" : "package",
    selected: name === selected,
    ...(name === selected && { source: settings.sources.backend ?? "default" }),
  }));
  if (options.json) printJson(io, rows);
  else {
    io.stdout.write(
      `${table([["NAME", "KIND", "SELECTED"], ...rows.map((r) => [r.name, r.kind, r.selected ? `yes (${r.source})` : ""])])}\n`,
    );
  }
  return 0;
}
