// The built claude-bottle, run as a user runs it, for integration tests: its path, the settings
// every test gives it (the local base image, the shared test agent image), and a
// runner that never throws on a non-zero exit, so tests assert on exit codes and output.
import { fileURLToPath } from "node:url";
import { integrationEnvironment } from "@claude-bottle/container-engine/testing";
import { execa } from "execa";

export const bin = fileURLToPath(new URL("../dist/bin.js", import.meta.url));

/** The environment for claude-bottle in tests, with `dataDir` and any `extra` variables. */
export function testEnvironment(dataDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { baseImage } = integrationEnvironment();
  return {
    CLAUDE_BOTTLE_BASE_IMAGE: baseImage,
    CLAUDE_BOTTLE_IMAGE: "claude-bottle-test-agent:latest",
    CLAUDE_BOTTLE_DATA_DIR: dataDir,
    ...extra,
  };
}

/** Run `claude-bottle args…` in `cwd` with the test environment and stdin closed. */
export function runClaudeBottle(
  args: string[],
  { cwd, dataDir, env = {} }: { cwd: string; dataDir: string; env?: NodeJS.ProcessEnv },
) {
  return execa("node", [bin, ...args], {
    cwd,
    reject: false,
    stdin: "ignore",
    env: testEnvironment(dataDir, env),
  });
}
