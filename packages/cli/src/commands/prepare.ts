import { imageRefOf } from "../bottle-setup.js";
import { withResolvedClaudeCode } from "../claude-code.js";
import { type Io, printJson } from "../io.js";
import { progressFor } from "../progress.js";
import { withSignalAbort } from "../signals.js";
import { backendFor, settingsFor } from "./shared.js";

export interface PrepareCommandOptions {
  backend?: string;
  workspace?: string;
  image?: string;
  json?: boolean;
  quiet?: boolean;
}

export async function prepareCommand(io: Io, options: PrepareCommandOptions): Promise<number> {
  const settings = await withResolvedClaudeCode(await settingsFor(io, options), io);
  const backend = await backendFor(settings);
  const imageRef = imageRefOf(settings);
  return withSignalAbort(async (signal) => {
    const progress = await progressFor(io.stderr, { quiet: Boolean(options.quiet) });
    const prepared = await backend.prepare(imageRef, { progress, signal });
    if (options.json) printJson(io, { backend: backend.name, image: imageRef, prepared });
    else io.stdout.write(`${backend.name}: ${imageRef} is ready (${describe(prepared)})\n`);
    return 0;
  });
}

function describe(prepared: unknown): string {
  if (prepared && typeof prepared === "object") {
    return Object.entries(prepared)
      .map(([key, value]) => `${key} ${String(value)}`)
      .join(", ");
  }
  return String(prepared);
}
