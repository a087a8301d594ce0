// vitest globalSetup for integration test projects: refuse to start without a usable engine, and
// afterwards remove the warm gateways of the tests' projects (what claude-bottle keeps between runs).
import { assertIntegrationEnvironment } from "./docker-environment.js";
import { removeOrphanedWarmGateways } from "./warm-gateways.js";

export default async function setup(): Promise<() => Promise<void>> {
  await assertIntegrationEnvironment();
  return () => removeOrphanedWarmGateways();
}
