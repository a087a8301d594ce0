import type { Availability } from "@claude-bottle/core";
import { builtinBackends } from "../backend-loader.js";
import { type Io, printJson } from "../io.js";
import { backendFor, settingsFor } from "./shared.js";

interface Check extends Availability {
  backend: string;
  selected: boolean;
}

/** Every built-in backend plus the configured one; exit 1 when the selected backend cannot run. */
export async function doctorCommand(
  io: Io,
  options: { workspace?: string; json?: boolean },
): Promise<number> {
  const settings = await settingsFor(io, options);
  const selected = settings.config.backend;
  const names = [...new Set([...Object.keys(builtinBackends), selected])];
  const checks: Check[] = [];
  for (const name of names) {
    try {
      const backend = await backendFor(settings, name);
      checks.push({ backend: name, selected: name === selected, ...(await backend.checkAvailability()) });
    } catch (error) {
      const { message, hint } = error as { message: string; hint?: string };
      checks.push({
        backend: name,
        selected: name === selected,
        available: false,
        reason: message,
        ...(hint && { fix: hint }),
      });
    }
  }
  if (options.json) printJson(io, { selected, checks });
  else {
    for (const check of checks) {
      const mark = check.available ? "ok  " : "FAIL";
      const title = `${mark} ${check.backend}${check.selected ? " (selected)" : ""}`;
      io.stdout.write(`${title}${check.version ? `  ${check.version}` : ""}\n`);
      if (!check.available) {
        io.stdout.write(`     why: ${check.reason ?? "unknown"}\n`);
        if (check.fix) io.stdout.write(`     fix: ${check.fix}\n`);
      }
    }
  }
  return checks.find((check) => check.selected)?.available ? 0 : 1;
}
