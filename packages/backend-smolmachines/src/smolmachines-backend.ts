import { join } from "node:path";
import {
  type Availability,
  type Backend,
  BottleError,
  buildAgentImage,
  ImageEngine,
  type PrepareOptions,
  type RunResult,
  type SharedBackendOptions,
  startEphemeralRegistry,
} from "@claude-bottle/core";
import { z } from "zod";
import { ensureSmolmachine } from "./ensure-smolmachine.js";
import { SmolvmCli } from "./smolvm-cli.js";

/** The smolmachines section of the config file (`backends.smolmachines`). */
export const smolmachinesOptionsSchema = z.strictObject({
  /** The smolvm executable (default `smolvm` on PATH). */
  smolvm: z.string().min(1).optional(),
});
export type SmolmachinesOptions = z.infer<typeof smolmachinesOptionsSchema> & SharedBackendOptions;

/** What `prepare` hands to `run`: the packed sidecar to boot. */
export interface PreparedSmolmachine {
  sidecar: string;
  imageRef: string;
}

export function smolmachines(options: SmolmachinesOptions): Backend<PreparedSmolmachine> {
  const engine = options.engine ?? new ImageEngine();
  const smolvm = new SmolvmCli(options.smolvm ? { bin: options.smolvm } : {});
  const cacheDir = join(options.cacheDir, "smolmachines");

  return {
    name: "smolmachines",

    async checkAvailability(): Promise<Availability> {
      try {
        return { available: true, version: `smolvm ${await smolvm.version()}` };
      } catch (error) {
        const reason = BottleError.is(error) ? error.message : String(error);
        return {
          available: false,
          reason,
          fix: "install smolvm from https://github.com/smol-machines/smolvm",
        };
      }
    },

    async prepare(imageRef: string, prepareOptions: PrepareOptions = {}): Promise<PreparedSmolmachine> {
      const { signal, progress } = prepareOptions;
      const sidecar = await ensureSmolmachine(imageRef, {
        cacheDir,
        engine,
        smolvm: { packCreate: (ref, stub) => smolvm.packCreate(ref, stub, signal ? { signal } : {}) },
        buildImage: (ref) =>
          buildAgentImage(engine, ref, options.image, {
            ...(signal && { signal }),
            ...(progress?.detail && { onOutput: progress.detail }),
          }),
        openRegistry: () =>
          startEphemeralRegistry(engine, { image: options.registryImage, ...(signal && { signal }) }),
        ...(progress && { progress }),
      });
      return { sidecar, imageRef };
    },

    async run(): Promise<RunResult> {
      throw new BottleError(
        "RUN_FAILED",
        "running on smolmachines is not available in this version of claude-bottle",
        {
          backend: "smolmachines",
          hint: "use --backend docker",
        },
      );
    },
  };
}
