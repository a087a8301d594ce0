import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const globalSetup = fileURLToPath(
  new URL("./packages/container-engine/src/testing/global-setup.ts", import.meta.url),
);

/**
 * The vitest config every package uses. Unit tests sit beside the code (src/**\/*.test.ts).
 * Integration tests (*.integration.test.ts) talk to a real Docker engine; their project refuses to
 * start without one, so they fail instead of skipping.
 */
// scripts/test.sh collects one JSON report per package and engine topology to print a single
// closing tally; a run against another topology than the local engine (scripts/second-engine.sh)
// writes PACKAGE.TOPOLOGY.json beside PACKAGE.json instead of overwriting it.
const reportDir = process.env.CLAUDE_BOTTLE_TEST_REPORT_DIR;
const topology = process.env.CLAUDE_BOTTLE_TEST_TOPOLOGY;
const reportName = `${basename(process.cwd())}${topology && topology !== "local" ? `.${topology}` : ""}.json`;
const reporters = reportDir
  ? ["default", ["json", { outputFile: join(reportDir, reportName) }]]
  : ["default"];

export const packageTestConfig = defineConfig({
  resolve: { conditions: ["dev-source"] },
  ssr: { resolve: { conditions: ["dev-source"] } },
  test: {
    reporters: reporters as never,
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["src/**/*.test.ts"], exclude: ["**/*.integration.test.ts"] },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["src/**/*.integration.test.ts", "test/**/*.integration.test.ts"],
          globalSetup: [globalSetup],
          testTimeout: 300_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
