import type { Backend, BottleInfo } from "@claude-bottle/core";
import { BottleError } from "@claude-bottle/core";
import { bottleNameFor, bottleNamePrefix } from "../bottle-setup.js";
import { type Io, printJson, table } from "../io.js";
import type { Settings } from "../settings.js";
import { backendsThat, settingsFor, workspaceOf } from "./shared.js";

/** Every backend that can list bottles: the built-in ones and the configured one. */
const listableBackends = (settings: Settings) =>
  backendsThat(settings, (backend) => Boolean(backend.listBottles));

/**
 * The bottles of every backend that lists them (each backend lists only its own, by
 * label or record). With `spare`, a backend other than that one that fails to list is left out
 * rather than failing the command: a run on one backend need not wait on another's troubles.
 */
async function allBottles(
  settings: Settings,
  spare?: Backend,
): Promise<{ bottles: BottleInfo[]; backends: Backend[] }> {
  const backends = await listableBackends(settings);
  const bottles: BottleInfo[] = [];
  for (const backend of backends) {
    // Listed even when the backend could not start a bottle now (no KVM any more, say): bottles it
    // made earlier may still be there. A failure counts only where the backend is available.
    const list = async () => {
      try {
        return await backend.listBottles!();
      } catch (error) {
        if ((await backend.checkAvailability()).available) throw error;
        return [];
      }
    };
    bottles.push(...(spare && backend.name !== spare.name ? await list().catch(() => []) : await list()));
  }
  return { bottles, backends };
}

/**
 * Refuse a run whose bottle name is taken: by a bottle of any backend (of this project or another
 * whose name adds up to the same), or by whatever else `backend` says holds it. Said before
 * anything starts, so the other bottle is never touched.
 */
export async function refuseTakenName(settings: Settings, backend: Backend, name: string): Promise<void> {
  const { bottles } = await allBottles(settings, backend);
  const bottle = bottles.find((b) => b.name === name || b.bottle === name);
  const holder = bottle
    ? `a running ${bottle.backend} bottle${bottle.workspace ? ` of ${bottle.workspace}` : ""}`
    : await backend.nameInUse?.(name);
  if (holder === undefined) return;
  throw new BottleError("USAGE", `the bottle name ${name} is in use by ${holder}`, {
    hint: "pick another --name, or stop that bottle (`claude-bottle ps`, `claude-bottle stop`)",
  });
}

/** How long ago `startedAt` was, as `ps` shows it: `45s`, `12m`, `3h`, `2d`. */
export function ageOf(startedAt: string, now: Date): string {
  const started = Date.parse(startedAt);
  if (Number.isNaN(started)) return "?";
  const seconds = Math.max(0, Math.floor((now.getTime() - started) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

export async function psCommand(io: Io, options: { json?: boolean; now?: Date }): Promise<number> {
  const { bottles } = await allBottles(await settingsFor(io, {}, { untrusted: "skip" }));
  const now = options.now ?? new Date();
  if (options.json) printJson(io, bottles);
  else if (bottles.length === 0) io.stderr.write("no bottles are running\n");
  else {
    io.stdout.write(
      `${table([
        ["NAME", "BACKEND", "WORKSPACE", "AGE", "STATUS"],
        ...bottles.map((b) => [b.name, b.backend, b.workspace, ageOf(b.startedAt, now), b.status]),
      ])}\n`,
    );
  }
  return 0;
}

/**
 * The bottles `name` means: the bottle of that full name (as `ps` shows it), or else the bottle the
 * current project started with `--name name`.
 */
function bottlesNamed(bottles: BottleInfo[], name: string, workspace: string): BottleInfo[] {
  const exact = bottles.filter((b) => b.name === name || b.bottle === name);
  if (exact.length > 0 || name.startsWith(bottleNamePrefix)) return exact;
  let full: string;
  try {
    full = bottleNameFor(workspace, name);
  } catch {
    return [];
  }
  return bottles.filter((b) => (b.bottle ?? b.name) === full && b.workspace === workspace);
}

export async function stopCommand(
  io: Io,
  names: string[],
  options: { all?: boolean; workspace?: string },
): Promise<number> {
  if (names.length === 0 && !options.all) {
    throw new BottleError("USAGE", "stop needs bottle names or --all", {
      hint: "see `claude-bottle ps` for names",
    });
  }
  if (names.length > 0 && options.all) {
    throw new BottleError("USAGE", "stop takes bottle names or --all, not both");
  }
  const settings = await settingsFor(io, options, { untrusted: "skip" });
  const workspace = workspaceOf(io, options);
  const { bottles, backends } = await allBottles(settings);
  const matches = names.map((name) => ({ name, found: bottlesNamed(bottles, name, workspace) }));
  const targets = options.all ? bottles : [...new Set(matches.flatMap((m) => m.found))];
  const unknown = matches.filter((m) => m.found.length === 0).map((m) => m.name);
  for (const bottle of targets) {
    await backends.find((b) => b.name === bottle.backend)?.stopBottle?.(bottle.name);
    io.stdout.write(`stopped ${bottle.name}\n`);
  }
  if (unknown.length > 0) {
    throw new BottleError("USAGE", `no running bottle is named ${unknown.join(", ")}`, {
      hint: "see `claude-bottle ps` (a short name given with --name is looked up in the current project)",
    });
  }
  return 0;
}
