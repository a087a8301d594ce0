/**
 * Finding and removing the Docker backend's bottles: the bottle's container, its gateway's container
 * (`<name>-gateway`) and the volume they share, all but the volume labelled with core's bottle labels.
 */

import type { ContainerSummary, ImageEngine } from "@claude-bottle/container-engine";
import { BottleError, type BottleInfo, bottleLabels } from "@claude-bottle/core";
import { gatewayBottleLabel, gatewayNames, removeVolume } from "./docker-gateway.js";

/** The labels every container of a Docker bottle carries (the bottle's and its gateway's). */
export const dockerBottleSelector = {
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

/**
 * The bottles among `containers`: each bottle's container, and a gateway whose bottle is gone (a
 * run that was killed before it could clean up) under its bottle's name, so `stop` can remove it.
 */
export function bottlesAmong(containers: readonly ContainerSummary[]): BottleInfo[] {
  const bottles = containers.filter((container) => container.labels[bottleLabels.role] === "bottle");
  const names = new Set(bottles.map((bottle) => bottle.name));
  const orphans = containers
    .filter((container) => container.labels[bottleLabels.role] === "gateway")
    .filter((gateway) => !names.has(gateway.labels[gatewayBottleLabel] ?? ""))
    .map((gateway) => ({
      ...toBottleInfo(gateway),
      name: gateway.labels[gatewayBottleLabel] ?? gateway.name,
      status: `gateway only (${gateway.status})`,
    }));
  return [...bottles.map(toBottleInfo), ...orphans];
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
  return bottlesAmong(await engine.listContainers(dockerBottleSelector));
}

/**
 * Remove the bottle called `name`: its container, its gateway and their volumes. Only
 * claude-bottle's own containers are touched, so a typo cannot remove someone else's container.
 */
export async function stopDockerBottle(engine: ImageEngine, name: string): Promise<void> {
  const containers = await engine.listContainers(dockerBottleSelector);
  const bottle = containers.find(
    (container) => container.name === name && container.labels[bottleLabels.role] === "bottle",
  );
  const gateway = containers.find(
    (container) =>
      container.labels[bottleLabels.role] === "gateway" && container.labels[gatewayBottleLabel] === name,
  );
  if (!bottle && !gateway) {
    throw new BottleError("USAGE", `there is no Docker bottle named ${name}`, {
      backend: "docker",
      hint: "`claude-bottle ps` lists the bottles that exist",
    });
  }
  // The bottle first: without its gateway it has no way out, but it should not outlive it.
  if (bottle) await engine.removeContainer(bottle.id);
  if (gateway) await engine.removeContainer(gateway.id);
  await removeVolume(engine, gatewayNames(name).volume);
  await removeVolume(engine, gatewayNames(name).outVolume);
}

/**
 * What holds `name` on this engine for a run of that name: a container named like the bottle or
 * its gateway, or a volume named like their shared volume, whoever made it. A run would fail on a
 * container, and would share (then remove) a volume, so any of them, claude-bottle's or not, makes
 * the name taken.
 */
export async function dockerNameInUse(engine: ImageEngine, name: string): Promise<string | undefined> {
  const { container: gateway, volume, outVolume } = gatewayNames(name);
  const containers = (
    await engine.exec(
      ["container", "ls", "--all", "--format", "{{.Names}}"],
      "RUN_FAILED",
      "listing containers",
    )
  ).split("\n");
  for (const taken of [name, gateway]) {
    if (containers.includes(taken)) return `the Docker container ${taken}`;
  }
  const volumes = (
    await engine.exec(["volume", "ls", "--format", "{{.Name}}"], "RUN_FAILED", "listing volumes")
  ).split("\n");
  for (const taken of [volume, outVolume]) {
    if (volumes.includes(taken)) return `the Docker volume ${taken}`;
  }
  return undefined;
}
