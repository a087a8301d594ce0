/**
 * Looking at a project's warm gateway from a test (see warm-gateway.ts): which one serves a
 * workspace, which runs it serves now, and removing it after a test. For vitest test files only.
 */
import { existsSync } from "node:fs";
import { bottleLabels } from "@claude-bottle/core";
import { ImageEngine } from "../image-engine.js";
import { removeWarmGateway, warmGatewayLabel } from "../warm-gateway.js";

/** The warm gateway serving `workspace`'s runs, if one is running. */
export async function warmGatewayOf(
  workspace: string,
  engine = new ImageEngine(),
): Promise<string | undefined> {
  const out = await engine.exec(
    [
      "ps",
      "--filter",
      `label=${bottleLabels.workspace}=${workspace}`,
      "--filter",
      `label=${warmGatewayLabel}`,
      "--format",
      "{{.Names}}",
    ],
    "RUN_FAILED",
    "listing warm gateways",
  );
  return out.split("\n").find(Boolean);
}

/**
 * The runs a warm gateway serves now: the run folders its sockets are bound in, read from its
 * /proc/net/unix (its runs folder cannot be listed, not even from inside). None once every run ended.
 */
export async function runsServedBy(gateway: string, engine = new ImageEngine()): Promise<string[]> {
  const table = await engine.exec(
    ["exec", gateway, "cat", "/proc/net/unix"],
    "RUN_FAILED",
    "reading sockets",
  );
  return [
    ...new Set([...table.matchAll(/\/run\/claude-bottle\/runs\/([^/\s]+)\//g)].map((match) => match[1]!)),
  ];
}

/** Remove `workspace`'s warm gateway and its volume, if there is one (a test's clean-up). */
export async function removeWarmGatewayOf(workspace: string, engine = new ImageEngine()): Promise<void> {
  const gateway = await warmGatewayOf(workspace, engine).catch(() => undefined);
  if (gateway) await removeWarmGateway(engine, gateway);
}

/**
 * Remove the warm gateways whose project folder is gone (a test run's teardown): the test that made
 * one has removed its folder, so no run of it can come again. Another test file's gateway, whose
 * folder still exists, stays: files of other packages may be running at the same moment.
 */
export async function removeOrphanedWarmGateways(engine = new ImageEngine()): Promise<void> {
  const gateways = await engine.listContainers({ [warmGatewayLabel]: true }).catch(() => []);
  for (const gateway of gateways) {
    const workspace = gateway.labels[bottleLabels.workspace];
    if (!workspace || existsSync(workspace)) continue;
    await removeWarmGateway(engine, gateway.name).catch(() => undefined);
  }
}
