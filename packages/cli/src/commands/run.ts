import { stat } from "node:fs/promises";
import { join } from "node:path";
import { type Backend, BottleError, capabilityGaps, type RunResult, type RunSpec } from "@claude-bottle/core";
import {
  agentIdentity,
  buildRunSpec,
  ensureProjectHome,
  gitProtectionOf,
  imageRefOf,
  importHostClaudeConfig,
  redactedSpec,
  seedClaudeState,
} from "../bottle-setup.js";
import { withResolvedClaudeCode } from "../claude-code.js";
import { storedCredentialEnv } from "../credential-store.js";
import {
  gitProtectionWarnings,
  type WorkspaceGit,
  watchHostExecuted,
  workspaceGitOf,
} from "../git-protection.js";
import { type Io, printJson } from "../io.js";
import { heldProgress, progressFor, quietProgress } from "../progress.js";
import type { Settings } from "../settings.js";
import { withSignalAbort } from "../signals.js";
import { loginWays, storesFor } from "./login.js";
import { refuseTakenName } from "./ps.js";
import { backendFor, settingsFor, workspaceOf } from "./shared.js";

export interface RunOptions {
  backend?: string;
  workspace?: string;
  image?: string;
  allow?: string[];
  allowHostPort?: string[];
  publish?: string[];
  importHostSettings?: boolean;
  dryRun?: boolean;
  /** `--name`: the bottle's own part of its name (see bottleNameFor). */
  name?: string;
  quiet?: boolean;
  /** The argv to run in the bottle. */
  command: string[];
  /** Claude Code runs without a terminal (`-p`): it cannot ask anyone to log in. */
  headless?: boolean;
}

export async function runCommand(io: Io, options: RunOptions): Promise<number> {
  const settings = await settingsFor(io, options);
  const imageRef = imageRefOf(settings);
  if (options.dryRun) {
    const { spec } = await bottleOf(io, options, settings);
    printJson(io, { backend: settings.config.backend, image: imageRef, spec: redactedSpec(spec) });
    return 0;
  }
  return withSignalAbort(async (signal) => {
    // The image is built while the rest of the run is set up: its only input, the settings, has
    // passed the trust check, and a warm build (some 60 ms of waiting on the engine) then hides most
    // of the setup. The bottle still starts only once all of it has passed; until then the build
    // shows no progress, and a refusal or an error stops it before it is reported.
    const held = options.quiet ? undefined : heldProgress(() => progressFor(io.stderr, { quiet: false }));
    const progress = held ?? quietProgress;
    const stopBuild = new AbortController();
    const backendReady = withResolvedClaudeCode(settings, io).then((resolved) => backendFor(resolved));
    // The backend is loaded first and the build started at once, ahead of the setup's steps, each of
    // which would otherwise hold it up. A backend that cannot be loaded is reported in its turn,
    // after what is wrong with the spec (setUpBottle awaits it).
    const backend = await backendReady.catch(() => undefined);
    const preparing = backend?.prepare(imageRef, {
      progress,
      signal: AbortSignal.any([signal, stopBuild.signal]),
    });
    preparing?.catch(() => {});
    let setUp: { backend: Backend; spec: RunSpec; git: WorkspaceGit };
    try {
      setUp = await setUpBottle(io, options, settings, backendReady);
      signal.throwIfAborted();
    } catch (error) {
      stopBuild.abort(error);
      held?.drop();
      await preparing?.catch(() => {});
      throw error;
    }
    const { spec, git } = setUp;
    held?.show();
    // Whatever the backend enforced, and however the run ends, say what changed in files the host
    // executes. Their fingerprint is taken while the image builds, and again after the build when
    // that took long: what the user changes in the meantime would be reported as the bottle's.
    // (Date.now: the wall clock is enough here, and unlike `performance` it loads no module.)
    const watch = () =>
      watchHostExecuted(spec.workspace, git.gitDirs, git.hooksPath).then((report) => ({
        report,
        at: Date.now(),
      }));
    const watching = watch();
    watching.catch(() => {});
    const prepared = await preparing;
    let watched = await watching;
    if (Date.now() - watched.at > fingerprintMaxAgeMs) watched = await watch();
    const hostExecutedReport = watched.report;
    let result: RunResult;
    try {
      result = await setUp.backend.run(prepared, spec, { signal });
    } finally {
      for (const line of await hostExecutedReport()) io.stderr.write(`claude-bottle: warning: ${line}\n`);
    }
    for (const warning of result.warnings ?? []) io.stderr.write(`claude-bottle: warning: ${warning}\n`);
    if (result.deniedHosts?.length) {
      io.stderr.write(
        `claude-bottle: blocked ${result.deniedHosts.join(", ")} (not on the allow-list; allow with --allow HOST or network.allow; log: ${spec.deniedLogPath})\n`,
      );
    }
    return result.exitCode;
  });
}

/**
 * How old the fingerprint of the host-executed files may be when the bottle starts: a warm build
 * takes well under this, a build that does anything more is followed by a fresh fingerprint.
 */
const fingerprintMaxAgeMs = 1000;

/**
 * The bottle's RunSpec for these options (what `--dry-run` prints), and what was asked of git for it.
 * A headless run without any credential is refused here.
 */
async function bottleOf(
  io: Io,
  options: RunOptions,
  settings: Settings,
): Promise<{ spec: RunSpec; git: WorkspaceGit }> {
  const workspace = workspaceOf(io, options);
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  const identity = await agentIdentity(
    workspace,
    uid !== undefined && gid !== undefined ? { uid, gid } : undefined,
  ).catch(() => undefined);
  // A credential in the environment comes first; without one, the stored one (claude-bottle login).
  const credential = await storedCredentialEnv(io.env, () => storesFor(settings, io));
  // Asked of git once for the whole run: the spec's mounts and read-only paths, the warnings, and
  // the host-executed files watched around the run.
  const git = await workspaceGitOf(workspace);
  const spec = await buildRunSpec({
    git,
    settings,
    workspace,
    command: options.command,
    env: { ...io.env, ...credential.env },
    terminal: { stdin: Boolean(io.stdin.isTTY), stdout: Boolean(io.stdout.isTTY) },
    identity,
    ...(options.name !== undefined && { name: options.name }),
  });
  if (options.headless && !credential.source && !(await loggedInInside(spec.home))) {
    throw new BottleError(
      "NOT_LOGGED_IN",
      "no credential for Claude Code, and a headless run cannot log in",
      {
        hint: loginWays,
      },
    );
  }
  return { spec, git };
}

/**
 * Everything before the bottle may start, but the image: the spec, the backend's refusals, the
 * project home and the Claude Code state in it, and what the user must read before the run.
 */
async function setUpBottle(
  io: Io,
  options: RunOptions,
  settings: Settings,
  backendReady: Promise<Backend>,
): Promise<{ backend: Backend; spec: RunSpec; git: WorkspaceGit }> {
  const { spec: built, git } = await bottleOf(io, options, settings);
  const backend = await backendReady;
  const spec = withoutDefaultLimitsUnsupported(built, backend, settings.sources);
  // What the run asks for that the backend does not do: refused or said before the bottle starts.
  const gaps = capabilityGaps(backend, spec);
  if (gaps.refusal) throw gaps.refusal;
  // Before the project home is touched or the bottle starts: a taken name must not disturb its holder.
  // Only a name the user chose can be taken; a generated one is random, and asking every backend for
  // its bottles would cost each run a listing (and the other backends' loading) for nothing.
  if (options.name !== undefined) await refuseTakenName(settings, backend, spec.name);
  await ensureProjectHome(spec.home, spec.user);
  if (!(await seedClaudeState(spec.home, spec.workspace, spec.user))) {
    io.stderr.write(
      `claude-bottle: warning: ${join(spec.home, ".claude.json")} is not a regular JSON file claude-bottle can read (a link, too big or malformed), so Claude Code may ask again to approve the key and to trust the folder; remove it to start the bottle's Claude Code state afresh\n`,
    );
  }
  // Only root on a root-owned workspace gets here (see agentIdentity); say so, since it is unusual.
  if (spec.user?.uid === 0) io.stderr.write(`claude-bottle: ${rootAgentNote(spec.workspace)}\n`);
  if (options.importHostSettings) {
    const copied = await importHostClaudeConfig(spec.home, spec.user);
    io.stderr.write(
      `claude-bottle: imported ${copied.length > 0 ? copied.join(", ") : "nothing (no ~/.claude/CLAUDE.md or settings.json)"}\n`,
    );
  }
  const gitProtect = gitProtectionOf(settings);
  for (const warning of [
    ...gaps.warnings,
    ...git.warnings,
    ...gitProtectionWarnings(gitProtect, settings.sources["git.protect"]),
  ])
    io.stderr.write(`claude-bottle: warning: ${warning}\n`);
  // Where the agent's servers will answer (they exist only once the agent starts them).
  for (const { port, hostPort } of spec.network.publish ?? [])
    io.stderr.write(`claude-bottle: http://127.0.0.1:${hostPort} -> the bottle's port ${port}\n`);
  return { backend, spec, git };
}

/**
 * The spec without the resource limits that are only claude-bottle's defaults and that the backend
 * cannot apply (rootless Podman on cgroup v1, pids in a VM): a default nobody asked for is not worth
 * a warning on every run. A limit the user set stays, and capabilityGaps warns that it is not applied.
 */
function withoutDefaultLimitsUnsupported(
  spec: RunSpec,
  backend: Backend,
  sources: Record<string, string>,
): RunSpec {
  const resources = { ...spec.resources };
  for (const key of ["cpus", "memoryMiB", "pids"] as const) {
    if (sources[`resources.${key}`] === "default" && !backend.capabilities?.resources?.[key])
      delete resources[key];
  }
  return { ...spec, resources };
}

/** What `run` says when the agent runs as root (see agentIdentity). */
function rootAgentNote(workspace: string): string {
  return `${workspace} belongs to root, so the agent runs as root in the bottle to write there (in a Docker bottle uid 0 with every capability dropped and no-new-privileges, which can change files root owns in the mounted folders and nothing more); to avoid it, chown the folder to a regular user`;
}

/** Claude Code's own login, made with /login in an earlier interactive run in this project's bottle. */
async function loggedInInside(home: string): Promise<boolean> {
  return (await stat(join(home, ".claude", ".credentials.json")).catch(() => undefined))?.isFile() ?? false;
}
