import {
  buildAgentImage,
  claudeCodeVersionOf,
  exportImage,
  ImageEngine,
  startEphemeralRegistry,
  sweepOrphanedContainers,
} from "@claude-bottle/container-engine";
import type {
  Availability,
  Backend,
  BackendFactory,
  CacheEntry,
  PrepareOptions,
  PruneCacheOptions,
  PruneCacheResult,
  RunResult,
  RunSpec,
  SharedBackendOptions,
} from "@claude-bottle/core";
import { z } from "zod";
import { checkSmolmachinesAvailability, type HostView, systemProbe } from "./availability.js";
import { ensureSmolmachine } from "./ensure-smolmachine.js";
import { machineRecordsDir } from "./machine-records.js";
import { listMachines, runSmolmachine, stopMachine } from "./run-smolmachine.js";
import {
  listSmolmachineCache,
  pruneSmolmachineCache,
  type SmolmachineCacheEntry,
  smolmachinesCacheDir,
} from "./smolmachine-cache.js";
import { SmolvmCli } from "./smolvm-cli.js";

/** The smolmachines section of the config file (`backends.smolmachines`). */
export const smolmachinesOptionsSchema = z.strictObject({
  /** The smolvm executable (default `smolvm` on PATH). */
  smolvm: z.string().min(1).optional(),
  /**
   * Gone: smolvm packs from a registry claude-bottle serves itself, so no registry image is needed.
   * A clear error rather than silence, so a config that sets it learns that it does nothing now.
   */
  registryImage: z
    .never({
      error:
        "no longer used: claude-bottle now serves the image to smolvm itself, without a registry container; remove this key",
    })
    .optional(),
});
export type SmolmachinesOptions = z.input<typeof smolmachinesOptionsSchema> &
  SharedBackendOptions & {
    /** The Docker engine that builds and exports the agent image (default: `docker` on PATH). */
    engine?: ImageEngine;
    /** How the availability check sees this machine (default: the real platform and /dev/kvm). */
    host?: HostView;
  };

/** A packed image as `claude-bottle cache ls` shows it. */
function cacheEntryOf(entry: SmolmachineCacheEntry): CacheEntry {
  return {
    id: entry.digest,
    path: entry.sidecar,
    ...(entry.imageRef && { imageRef: entry.imageRef }),
    sizeBytes: entry.sizeBytes,
    createdAt: entry.createdAt,
    lastUsedAt: entry.lastUsedAt,
  };
}

/** What `prepare` hands to `run`: the packed sidecar to boot. */
export interface PreparedSmolmachine {
  sidecar: string;
  imageRef: string;
}

/**
 * Claude Code in a smolvm microVM. `prepare` packs the agent image into a cached `.smolmachine`
 * (see ensure-smolmachine.ts); `run` boots it as a machine of its own per session
 * (see run-smolmachine.ts).
 *
 * `listBottles`/`stopBottle` work from claude-bottle's own record of the machines it created
 * (machine-records.ts), which also lets every run sweep machines whose claude-bottle was killed.
 */
export const smolmachines = ((options: SmolmachinesOptions): Backend<PreparedSmolmachine> => {
  const engine = options.engine ?? new ImageEngine();
  const smolvm = new SmolvmCli(options.smolvm ? { bin: options.smolvm } : {});
  const cacheDir = smolmachinesCacheDir(options.cacheDir);
  const recordsDir = machineRecordsDir(options.dataDir);

  return {
    name: "smolmachines",
    capabilities: {
      // smolvm's --credential binding (machine-plan.ts); an older smolvm refuses the run instead.
      credentials: true,
      // smolvm's own --allow-host/--allow-cidr; it does not tell what it refused.
      egress: true,
      // The agent drops to spec.user inside the guest (setpriv).
      user: true,
      // --cpus and --mem; a VM's processes cannot exhaust the host's pids, and smolvm has no limit for them.
      resources: { cpus: true, memoryMiB: true },
      // smolvm publishes a guest port (-p), but it cannot open one port of the host: only all or none.
      publish: true,
    },

    checkAvailability(): Promise<Availability> {
      return checkSmolmachinesAvailability(systemProbe(() => smolvm.version(), options.host));
    },

    async prepare(imageRef: string, prepareOptions: PrepareOptions = {}): Promise<PreparedSmolmachine> {
      const { signal, progress } = prepareOptions;
      const sidecar = await ensureSmolmachine(imageRef, {
        cacheDir,
        // One flattened, uncompressed layer from `docker export`, which streams at once where
        // `docker save` first gathers every layer (see container-engine's image-export.ts).
        exportImage: (source, dir) => exportImage(engine, source, dir, signal ? { signal } : {}),
        smolvm: {
          packCreate: (ref, stub, packOptions) =>
            smolvm.packCreate(ref, stub, { ...packOptions, ...(signal && { signal }) }),
        },
        buildImage: (ref) =>
          buildAgentImage(engine, ref, options.image, {
            ...(signal && { signal }),
            ...(progress?.detail && { onOutput: progress.detail }),
          }),
        // Served by this process on 127.0.0.1, where smolvm (run by this process) pulls from: no
        // registry container, so nothing depends on the engine publishing a port on this machine.
        openRegistry: () => startEphemeralRegistry(signal ? { signal } : {}),
        sweepContainers: () => sweepOrphanedContainers(engine),
        ...(progress && { progress }),
        ...(signal && { signal }),
      });
      return { sidecar, imageRef };
    },

    run(
      prepared: PreparedSmolmachine,
      spec: RunSpec,
      runOptions: { signal?: AbortSignal } = {},
    ): Promise<RunResult> {
      return runSmolmachine(prepared.sidecar, spec, {
        smolvm,
        recordsDir,
        ...(runOptions.signal && { signal: runOptions.signal }),
      });
    },

    listBottles: () => listMachines(smolvm, recordsDir),

    stopBottle: (name: string) => stopMachine(smolvm, recordsDir, name),

    // The agent image is built with Docker before it is packed; its label says the version.
    claudeCodeVersionIn: (imageRef: string) => claudeCodeVersionOf(engine, imageRef),

    async listCache(): Promise<CacheEntry[]> {
      return (await listSmolmachineCache(options.cacheDir)).map(cacheEntryOf);
    },

    async pruneCache(pruneOptions: PruneCacheOptions = {}): Promise<PruneCacheResult> {
      const result = await pruneSmolmachineCache(options.cacheDir, { ...pruneOptions, engine });
      return {
        removed: result.removed.map(cacheEntryOf),
        busy: result.busy,
        leftovers: [
          ...(result.leftovers.length > 0
            ? [`${result.leftovers.length} leftovers of interrupted packs`]
            : []),
          ...result.containers.map((name) => `container ${name} (its claude-bottle was killed)`),
        ],
        freedBytes: result.freedBytes,
      };
    },
  };
}) satisfies BackendFactory<SmolmachinesOptions, PreparedSmolmachine>;
