import {
  type Availability,
  type Backend,
  BottleError,
  buildAgentImage,
  ImageEngine,
  type PrepareOptions,
  type ResolveHost,
  type RunResult,
  type RunSpec,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { z } from "zod";
import { listDockerBottles, stopDockerBottle } from "./docker-bottles.js";
import { runBottle } from "./docker-run.js";
import type { HostFirewallOptions } from "./host-firewall.js";

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
  /**
   * How the egress proxy resolves the names a bottle's allow-list admits (default: the host's
   * resolver, as `dns.lookup` uses it). Not a config setting: for programs embedding the backend
   * that resolve names their own way.
   */
  resolveHost?: ResolveHost;
  /**
   * How each bottle is fenced off from the services listening on the host: which ways of adding
   * its firewall rules to try (default: iptables as root, then a helper container). Not a config
   * setting: for programs embedding the backend, and for tests that force one way.
   */
  hostFirewall?: HostFirewallOptions;
}

/** What `prepare` hands to `run`: the agent image's id. */
export interface PreparedDockerImage {
  imageId: string;
  imageRef: string;
}

export function docker(options: DockerOptions): Backend<PreparedDockerImage> {
  const engine = options.engine ?? new ImageEngine();
  return {
    name: "docker",
    // docker-run-args.ts binds each read-only path onto itself and pins the folders above it.
    capabilities: { readOnlyPaths: true },

    async checkAvailability(): Promise<Availability> {
      try {
        return { available: true, version: `Docker Engine ${await engine.serverVersion()}` };
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
      const build = () =>
        buildAgentImage(engine, imageRef, options.image, {
          ...(signal && { signal }),
          ...(progress?.detail && { onOutput: progress.detail }),
        });
      const imageId = await (progress ? progress.step("build agent image", build) : build());
      return { imageId, imageRef };
    },

    async run(
      prepared: PreparedDockerImage,
      spec: RunSpec,
      runOptions: { signal?: AbortSignal } = {},
    ): Promise<RunResult> {
      return runBottle(engine, prepared.imageId, spec, {
        ...(runOptions.signal && { signal: runOptions.signal }),
        ...(options.resolveHost && { resolveHost: options.resolveHost }),
        ...(options.hostFirewall && { hostFirewall: options.hostFirewall }),
      });
    },

    listBottles: () => listDockerBottles(engine),

    stopBottle: (name: string) => stopDockerBottle(engine, name),
  };
}
