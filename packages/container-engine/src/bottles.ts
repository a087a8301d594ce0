/**
 * Finding and removing a container engine's bottles: the bottle's container, its gateway's container
 * (`<name>-gateway`) and the volumes they share, all but the volumes labelled with core's bottle
 * labels. Each engine's bottles carry its name as their backend label, so Docker's and Podman's
 * bottles stay apart even where both engines see the same containers.
 */

import { BottleError, type BottleInfo, bottleLabels } from "@claude-bottle/core";
import type { EngineFlavor } from "./engine-flavor.js";
import { gatewayBottleLabel, gatewayNames } from "./gateway-container.js";
import type { ContainerSummary, ImageEngine } from "./image-engine.js";
import { removeWarmGateway, warmGatewayLabel } from "./warm-gateway.js";

/** The labels every container of this engine's bottles carries (the bottle's and its gateway's). */
function bottleSelector(flavor: EngineFlavor): Record<string, string> {
  return { [bottleLabels.backend]: flavor.name };
}

/** A container from `ps` as `claude-bottle ps` shows it. */
export function toBottleInfo(container: ContainerSummary, flavor: EngineFlavor): BottleInfo {
  return {
    name: container.name,
    backend: flavor.name,
    workspace: container.labels[bottleLabels.workspace] ?? "",
    // `run` creates and starts in one go, so creation is when the bottle started.
    startedAt: engineTimeToIso(container.createdAt),
    status: container.status,
  };
}

/**
 * The bottles among `containers`: each bottle's container, a project's warm gateway under its own
 * name (kept between runs on purpose, and removed by `stop` like a bottle), and a gateway whose
 * bottle is gone (a run that was killed before it could clean up) under its bottle's name, so `stop`
 * can remove it.
 */
export function bottlesAmong(containers: readonly ContainerSummary[], flavor: EngineFlavor): BottleInfo[] {
  const bottles = containers.filter((container) => container.labels[bottleLabels.role] === "bottle");
  const names = new Set(bottles.map((bottle) => bottle.name));
  const warm = containers
    .filter((container) => container.labels[bottleLabels.role] === "gateway" && isWarm(container))
    .map((gateway) => ({
      ...toBottleInfo(gateway, flavor),
      kept: true,
      status: `warm gateway, stops after ${gateway.labels[warmGatewayLabel]} idle minutes (${gateway.status})`,
    }));
  const orphans = containers
    .filter((container) => container.labels[bottleLabels.role] === "gateway" && !isWarm(container))
    .filter((gateway) => !names.has(gateway.labels[gatewayBottleLabel] ?? ""))
    .map((gateway) => ({
      ...toBottleInfo(gateway, flavor),
      name: gateway.labels[gatewayBottleLabel] ?? gateway.name,
      status: `gateway only (${gateway.status})`,
    }));
  return [...bottles.map((bottle) => toBottleInfo(bottle, flavor)), ...warm, ...orphans];
}

function isWarm(container: ContainerSummary): boolean {
  return container.labels[warmGatewayLabel] !== undefined;
}

/** `docker ps` and `podman ps` print "2025-05-05 10:00:00 +0000 UTC"; anything else is passed through unchanged. */
export function engineTimeToIso(text: string): string {
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)? ([+-]\d{2})(\d{2})\b/.exec(text);
  if (!match) return text;
  const [, date, time, fraction = "", hours, minutes] = match;
  const parsed = new Date(`${date}T${time}${fraction.slice(0, 4)}${hours}:${minutes}`);
  return Number.isNaN(parsed.getTime()) ? text : parsed.toISOString();
}

/** This engine's bottles, for `claude-bottle ps`. */
export async function listBottles(engine: ImageEngine): Promise<BottleInfo[]> {
  return bottlesAmong(await engine.listContainers(bottleSelector(engine.flavor)), engine.flavor);
}

/**
 * Remove the bottle called `name`: its container, its gateway and their volumes; or the warm gateway
 * called `name` and its volume (the runs still attached to it lose their way out and fail). Only
 * claude-bottle's own containers are touched, so a typo cannot remove someone else's container.
 */
export async function stopBottle(engine: ImageEngine, name: string): Promise<void> {
  const { flavor } = engine;
  const containers = await engine.listContainers(bottleSelector(flavor));
  const warm = containers.find((container) => container.name === name && isWarm(container));
  if (warm) {
    await removeWarmGateway(engine, warm.name);
    return;
  }
  const bottle = containers.find(
    (container) => container.name === name && container.labels[bottleLabels.role] === "bottle",
  );
  const gateway = containers.find(
    (container) =>
      container.labels[bottleLabels.role] === "gateway" && container.labels[gatewayBottleLabel] === name,
  );
  if (!bottle && !gateway) {
    throw new BottleError("USAGE", `there is no ${flavor.displayName} bottle named ${name}`, {
      backend: flavor.name,
      hint: "`claude-bottle ps` lists the bottles that exist",
    });
  }
  // The bottle first: without its gateway it has no way out, but it should not outlive it.
  if (bottle) await engine.removeContainer(bottle.id);
  if (gateway) await engine.removeContainer(gateway.id);
  await engine.removeVolume(gatewayNames(name).volume);
  await engine.removeVolume(gatewayNames(name).outVolume);
}

/**
 * What holds `name` on this engine for a run of that name: a container named like the bottle or
 * its gateway, or a volume named like their shared volume, whoever made it. A run would fail on a
 * container, and would share (then remove) a volume, so any of them, claude-bottle's or not, makes
 * the name taken.
 */
export async function nameInUse(engine: ImageEngine, name: string): Promise<string | undefined> {
  const { container: gateway, volume, outVolume } = gatewayNames(name);
  const engineName = engine.flavor.displayName;
  const containers = await engine.containerNames();
  for (const taken of [name, gateway]) {
    if (containers.includes(taken)) return `the ${engineName} container ${taken}`;
  }
  const volumes = await engine.volumeNames();
  for (const taken of [volume, outVolume]) {
    if (volumes.includes(taken)) return `the ${engineName} volume ${taken}`;
  }
  return undefined;
}
