// vitest globalSetup for integration test projects: refuse to start without a usable engine, and
// afterwards remove the warm gateways of the tests' projects (what claude-bottle keeps between runs).
import { existsSync } from "node:fs";
import { bottleLabels } from "@claude-bottle/core";
import { ImageEngine } from "../image-engine.js";
import { warmGatewayLabel } from "../warm-gateway.js";
import { assertIntegrationEnvironment } from "./docker-environment.js";

export default async function setup(): Promise<() => Promise<void>> {
  await assertIntegrationEnvironment();
  return removeOrphanedWarmGateways;
}

/**
 * Warm gateways whose project folder is gone: the test that made it has removed its folder, so no
 * run of it can come again. Another test file's gateway, whose folder still exists, stays (files of
 * other packages may be running at the same moment).
 */
async function removeOrphanedWarmGateways(): Promise<void> {
  const engine = new ImageEngine();
  const gateways = await engine.listContainers({ [warmGatewayLabel]: true }).catch(() => []);
  for (const gateway of gateways) {
    const workspace = gateway.labels[bottleLabels.workspace];
    if (!workspace || existsSync(workspace)) continue;
    await engine.removeContainer(gateway.id).catch(() => undefined);
    await engine.removeVolume(gateway.name).catch(() => undefined);
  }
}
