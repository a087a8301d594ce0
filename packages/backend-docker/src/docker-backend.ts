import {
  type Availability,
  type Backend,
  BottleError,
  buildAgentImage,
  ImageEngine,
  type PrepareOptions,
  type RunResult,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { z } from "zod";

/** The docker section of the config file (`backends.docker`). */
export const dockerOptionsSchema = z.strictObject({});
export type DockerOptions = z.infer<typeof dockerOptionsSchema> & SharedBackendOptions;

/** What `prepare` hands to `run`: the agent image's id. */
export interface PreparedDockerImage {
  imageId: string;
  imageRef: string;
}

export function docker(options: DockerOptions): Backend<PreparedDockerImage> {
  const engine = options.engine ?? new ImageEngine();
  return {
    name: "docker",

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
      await (progress ? progress.step("build agent image", build) : build());
      return { imageId: await engine.imageId(imageRef), imageRef };
    },

    async run(): Promise<RunResult> {
      throw new BottleError(
        "RUN_FAILED",
        "running on docker is not available in this version of claude-bottle",
        {
          backend: "docker",
        },
      );
    },
  };
}
