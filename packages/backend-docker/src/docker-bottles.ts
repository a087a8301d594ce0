/**
 * Finding and removing the Docker backend's bottles: the container and the network named after
 * it, both labelled with core's bottle labels.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  BottleError,
  type BottleInfo,
  bottleLabels,
  type ContainerSummary,
  type ImageEngine,
} from "@claude-bottle/core";

/** The labels every Docker bottle carries; `ps` and `stop` select by these. */
export const dockerBottleSelector = {
  [bottleLabels.role]: "bottle",
  [bottleLabels.backend]: "docker",
} as const;

/** A container from `docker ps` as `claude-bottle ps` shows it. */
export function toBottleInfo(container: ContainerSummary): BottleInfo {
  return {
    name: container.name,
    backend: "docker",
    workspace: container.labels[bottleLabels.workspace] ?? "",
    // `docker run` creates and starts in one go, so creation is when the bottle started.
    startedAt: dockerTimeToIso(container.createdAt),
    status: container.status,
  };
}

/** What a run needs to know about the bottle's network, from one `docker network inspect`. */
export interface BottleNetwork {
  id: string;
  /** The IPv4 gateway: the host's address as seen from inside; undefined when the network has none. */
  gateway: string | undefined;
  /** The network's driver options (`com.docker.network.bridge.name`, for instance). */
  options: Record<string, string>;
}

/** `docker network inspect`'s object for one network, reduced to what a run needs. */
export function bottleNetworkOf(inspect: Record<string, unknown>): BottleNetwork {
  const configs = (inspect.IPAM as { Config?: { Gateway?: string }[] | null } | undefined)?.Config ?? [];
  return {
    id: String(inspect.Id ?? ""),
    gateway: configs
      .map((config) => config.Gateway ?? "")
      .find((address) => /^\d+\.\d+\.\d+\.\d+$/.test(address)),
    options: (inspect.Options as Record<string, string> | null | undefined) ?? {},
  };
}

/** `docker ps` prints "2025-05-05 10:00:00 +0000 UTC"; anything else is passed through unchanged. */
export function dockerTimeToIso(text: string): string {
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)? ([+-]\d{2})(\d{2})\b/.exec(text);
  if (!match) return text;
  const [, date, time, fraction = "", hours, minutes] = match;
  const parsed = new Date(`${date}T${time}${fraction.slice(0, 4)}${hours}:${minutes}`);
  return Number.isNaN(parsed.getTime()) ? text : parsed.toISOString();
}

export async function listDockerBottles(engine: ImageEngine): Promise<BottleInfo[]> {
  const containers = await engine.listContainers(dockerBottleSelector);
  return containers.map(toBottleInfo);
}

/**
 * Remove the bottle called `name`: its container and its network. Only claude-bottle's own
 * containers are touched, so a typo cannot remove someone else's container.
 */
export async function stopDockerBottle(engine: ImageEngine, name: string): Promise<void> {
  const containers = await engine.listContainers(dockerBottleSelector);
  const found = containers.some((container) => container.name === name);
  const network = await isBottleNetwork(engine, name);
  if (!found && !network) {
    throw new BottleError("USAGE", `there is no Docker bottle named ${name}`, {
      backend: "docker",
      hint: "`claude-bottle ps` lists the bottles that exist",
    });
  }
  if (found) await engine.removeContainer(name);
  await removeBottleNetwork(engine, name);
}

/** True when a network called `name` exists and is a Docker bottle's. */
async function isBottleNetwork(engine: ImageEngine, name: string): Promise<boolean> {
  const out = await engine.exec(
    ["network", "ls", "--filter", `label=${bottleLabels.role}=bottle`, "--format", "{{.Name}}"],
    "RUN_FAILED",
    "listing bottle networks",
  );
  return out.split("\n").includes(name);
}

/**
 * Remove a bottle's network; one that is already gone is not an error. The engine may still be
 * detaching a container that was just removed, so "active endpoints" is retried for a few seconds.
 */
export async function removeBottleNetwork(engine: ImageEngine, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await engine.exec(["network", "rm", name], "RUN_FAILED", `removing the bottle's network ${name}`);
      return;
    } catch (error) {
      const message = BottleError.is(error) ? error.message : String(error);
      if (/No such network|network \S+ not found/i.test(message)) return;
      if (/active endpoints/i.test(message) && attempt < 40) {
        await sleep(250);
        continue;
      }
      if (BottleError.is(error) && error.code === "RUN_FAILED") {
        throw new BottleError("RUN_FAILED", error.message, {
          backend: "docker",
          hint: `remove it with \`docker network rm ${name}\``,
          cause: error,
        });
      }
      throw error;
    }
  }
}
