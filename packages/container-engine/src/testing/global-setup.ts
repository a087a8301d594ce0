// vitest globalSetup for integration test projects: refuse to start without a usable engine.
import { assertIntegrationEnvironment } from "./docker-environment.js";

export default async function setup(): Promise<void> {
  await assertIntegrationEnvironment();
}
