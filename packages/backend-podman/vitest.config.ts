import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { packageTestConfig } from "../../vitest.shared.js";

// The shared config, with this package's own check before the integration tests: rootless Podman
// for the invoking user, not a Docker engine (which the tests' user must not have).
const podmanSetup = fileURLToPath(new URL("./test/global-setup.ts", import.meta.url));
const projects = (packageTestConfig.test?.projects ?? []) as { test?: { name?: string } }[];

export default defineConfig({
  ...packageTestConfig,
  test: {
    ...packageTestConfig.test,
    projects: projects.map((project) =>
      project.test?.name === "integration"
        ? { ...project, test: { ...project.test, globalSetup: [podmanSetup] } }
        : project,
    ) as never,
  },
});
