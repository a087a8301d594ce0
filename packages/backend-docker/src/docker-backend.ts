import {
  claudeCodeVersionOf,
  defaultWarmGatewayMinutes,
  dockerFlavor,
  ImageEngine,
  listBottles,
  nameInUse,
  type PreparedBottleImages,
  prepareBottleImages,
  runBottle,
  stopBottle,
  warmGatewayOptionsShape,
} from "@claude-bottle/container-engine";
import {
  type Availability,
  type Backend,
  type BackendFactory,
  BottleError,
  type PrepareOptions,
  type RunResult,
  type RunSpec,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { z } from "zod";
import { engineNotes } from "./engine-advisories.js";

/**
 * The docker section of the config file (`backends.docker`). Everything a bottle needs (resources,
 * network, mounts, image) is configured once for all backends; what is Docker's own is how long a
 * project's gateway stays warm (container-engine's warm-gateway.ts). Strict: misspelt keys fail.
 */
export const dockerOptionsSchema = z.strictObject({ ...warmGatewayOptionsShape });
/** What `docker()` takes: the shared settings plus the fields of `dockerOptionsSchema`. */
export interface DockerOptions extends SharedBackendOptions {
  /** Minutes a project's gateway stays once idle (default `defaultWarmGatewayMinutes`); 0: one per run. */
  warmGatewayMinutes?: number;
  /** The Docker engine (default: the `docker` CLI on PATH, wherever DOCKER_HOST points). */
  engine?: ImageEngine;
  /**
   * Names the gateway resolves to fixed addresses (`--add-host` entries of its container), before
   * DNS. Not a config setting: for programs embedding the backend that resolve names their own way.
   */
  gatewayHosts?: Readonly<Record<string, string>>;
}

/** What `prepare` hands to `run`: the agent image's id, and the gateway image's tag. */
export type PreparedDockerImage = PreparedBottleImages;

export const docker = ((options: DockerOptions): Backend<PreparedDockerImage> => {
  const engine = options.engine ?? new ImageEngine({ flavor: dockerFlavor });
  return {
    name: "docker",
    // container-engine's bottle-run-args.ts binds each read-only path onto itself and pins the folders above it.
    capabilities: {
      credentials: true,
      egress: true,
      denialLog: true,
      user: true,
      resources: { cpus: true, memoryMiB: true, pids: true },
      readOnlyPaths: true,
      hostPorts: true,
      publish: true,
    },

    async checkAvailability(): Promise<Availability> {
      try {
        const version = await engine.serverVersion();
        const notes = engineNotes(version);
        return { available: true, version: `Docker Engine ${version}`, ...(notes.length > 0 && { notes }) };
      } catch (error) {
        const bottle = BottleError.is(error) ? error : undefined;
        return {
          available: false,
          reason: bottle?.message ?? String(error),
          fix: bottle?.hint ?? "install and start Docker",
        };
      }
    },

    prepare: (imageRef: string, prepareOptions: PrepareOptions = {}): Promise<PreparedDockerImage> =>
      prepareBottleImages(engine, options, imageRef, prepareOptions),

    async run(
      prepared: PreparedDockerImage,
      spec: RunSpec,
      runOptions: { signal?: AbortSignal } = {},
    ): Promise<RunResult> {
      return runBottle(engine, prepared, spec, {
        ...(runOptions.signal && { signal: runOptions.signal }),
        ...(options.gatewayHosts && { gatewayHosts: options.gatewayHosts }),
        warmGatewayMinutes: options.warmGatewayMinutes ?? defaultWarmGatewayMinutes,
      });
    },

    listBottles: () => listBottles(engine),

    stopBottle: (name: string) => stopBottle(engine, name),
    nameInUse: (name: string) => nameInUse(engine, name),
    claudeCodeVersionIn: (imageRef: string) => claudeCodeVersionOf(engine, imageRef),
  };
}) satisfies BackendFactory<DockerOptions, PreparedDockerImage>;
