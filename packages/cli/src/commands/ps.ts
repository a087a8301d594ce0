import type { Backend, BottleInfo } from "@claude-bottle/core";
import { BottleError } from "@claude-bottle/core";
import { builtinBackends } from "../backend-loader.js";
import { type Io, printJson, table } from "../io.js";
import { backendFor, settingsFor } from "./shared.js";

/** Every backend that can list bottles, with the reason for any that could not be asked. */
async function listableBackends(io: Io): Promise<Backend[]> {
  const settings = await settingsFor(io, {}, { untrusted: "skip" });
  const names = [...new Set([...Object.keys(builtinBackends), settings.config.backend])];
  const backends: Backend[] = [];
  for (const name of names) {
    const backend = await backendFor(settings, name).catch(() => undefined);
    if (backend?.listBottles) backends.push(backend);
  }
  return backends;
}

async function allBottles(io: Io): Promise<{ bottles: BottleInfo[]; backends: Backend[] }> {
  const backends = await listableBackends(io);
  const bottles: BottleInfo[] = [];
  for (const backend of backends) {
    if (!(await backend.checkAvailability()).available) continue;
    bottles.push(...(await backend.listBottles!()));
  }
  return { bottles, backends };
}

export async function psCommand(io: Io, options: { json?: boolean }): Promise<number> {
  const { bottles } = await allBottles(io);
  if (options.json) printJson(io, bottles);
  else if (bottles.length === 0) io.stderr.write("no bottles are running\n");
  else {
    io.stdout.write(
      `${table([["NAME", "BACKEND", "WORKSPACE", "STARTED", "STATUS"], ...bottles.map((b) => [b.name, b.backend, b.workspace, b.startedAt, b.status])])}\n`,
    );
  }
  return 0;
}

export async function stopCommand(io: Io, names: string[], options: { all?: boolean }): Promise<number> {
  if (names.length === 0 && !options.all) {
    throw new BottleError("USAGE", "stop needs bottle names or --all", {
      hint: "see `claude-bottle ps` for names",
    });
  }
  if (names.length > 0 && options.all) {
    throw new BottleError("USAGE", "stop takes bottle names or --all, not both");
  }
  const { bottles, backends } = await allBottles(io);
  const targets = options.all ? bottles : bottles.filter((b) => names.includes(b.name));
  const unknown = names.filter((name) => !bottles.some((b) => b.name === name));
  for (const bottle of targets) {
    await backends.find((b) => b.name === bottle.backend)?.stopBottle?.(bottle.name);
    io.stdout.write(`stopped ${bottle.name}\n`);
  }
  if (unknown.length > 0) {
    throw new BottleError("USAGE", `no running bottle is named ${unknown.join(", ")}`, {
      hint: "see `claude-bottle ps`",
    });
  }
  return 0;
}
