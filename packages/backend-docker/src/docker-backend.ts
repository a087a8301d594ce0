import {
  buildAgentImage,
  checkRelayRuns,
  dockerFlavor,
  ensureGatewayImage,
  ImageEngine,
  listBottles,
  nameInUse,
  readCaCerts,
  runBottle,
  stopBottle,
} from "@claude-bottle/container-engine";
import {
  type Availability,
  type Backend,
  type BackendFactory,
  BottleError,
  defaults,
  type PrepareOptions,
  type RunResult,
  type RunSpec,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { z } from "zod";
import { engineNotes } from "./engine-advisories.js";

/**
 * The docker section of the config file (`backends.docker`). Everything a bottle needs (resources,
 * network, mounts, image) is configured once for all backends, so this has no settings of its own
 * yet; being strict, it still catches misspelt keys.
 */
export const dockerOptionsSchema = z.strictObject({});
/**
 * What `docker()` takes: the shared settings plus the fields of `dockerOptionsSchema` (none yet; zod
 * types an empty strict object as "no key at all", which cannot be combined with the shared settings).
 */
export interface DockerOptions extends SharedBackendOptions {
  /** The Docker engine (default: the `docker` CLI on PATH, wherever DOCKER_HOST points). */
  engine?: ImageEngine;
  /**
   * Names the gateway resolves to fixed addresses (`--add-host` entries of its container), before
   * DNS. Not a config setting: for programs embedding the backend that resolve names their own way.
   */
  gatewayHosts?: Readonly<Record<string, string>>;
}

/** What `prepare` hands to `run`: the agent image's id, and the gateway image's tag. */
export interface PreparedDockerImage {
  imageId: string;
  imageRef: string;
  gatewayImage: string;
}

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

    async prepare(imageRef: string, prepareOptions: PrepareOptions = {}): Promise<PreparedDockerImage> {
      const { signal, progress } = prepareOptions;
      const step = <T>(title: string, work: () => Promise<T>) =>
        progress ? progress.step(title, work) : work();
      const output = { ...(signal && { signal }), ...(progress?.detail && { onOutput: progress.detail }) };
      // The gateway's image is claude-bottle's own, built from the Node base: the agent image may be
      // the user's. On a warm run it exists already and this is one `image inspect`, hidden behind
      // the agent image's cached build.
      const source = options.image;
      const bundled = source.kind === "bundled" ? source : undefined;
      const caFile = options.helperImage?.extraCaCerts ?? bundled?.extraCaCerts;
      const gateway = ensureGatewayImage(
        engine,
        {
          base: options.helperImage?.base ?? bundled?.base ?? defaults.baseImage,
          ...(caFile && { extraCaCerts: await readCaCerts(caFile) }),
        },
        output,
      );
      gateway.catch(() => {});
      const imageId = await step("build agent image", () =>
        buildAgentImage(engine, imageRef, source, output),
      );
      const gatewayImage = await step("gateway image", () => gateway);
      // The relay inside the bottle needs node; the bundled image has it, another image may not.
      if (source.kind !== "bundled") await checkRelayRuns(engine, imageId, imageRef, options.cacheDir);
      return { imageId, imageRef, gatewayImage };
    },

    async run(
      prepared: PreparedDockerImage,
      spec: RunSpec,
      runOptions: { signal?: AbortSignal } = {},
    ): Promise<RunResult> {
      return runBottle(engine, { image: prepared.imageId, gatewayImage: prepared.gatewayImage }, spec, {
        ...(runOptions.signal && { signal: runOptions.signal }),
        ...(options.gatewayHosts && { gatewayHosts: options.gatewayHosts }),
      });
    },

    listBottles: () => listBottles(engine),

    stopBottle: (name: string) => stopBottle(engine, name),
    nameInUse: (name: string) => nameInUse(engine, name),
  };
}) satisfies BackendFactory<DockerOptions, PreparedDockerImage>;
