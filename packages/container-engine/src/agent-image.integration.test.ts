import { defaults } from "@claude-bottle/core";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { buildAgentImage } from "./agent-image.js";
import { integrationEnvironment } from "./testing/index.js";

const { engine, baseImage } = integrationEnvironment();
const imageRef = "claude-bottle-test-agent:latest";

describe("the bundled agent image (real engine)", () => {
  it("builds on the configured base with the pinned Claude Code, git and ripgrep, as a non-root user", async () => {
    const lines: string[] = [];
    const id = await buildAgentImage(
      engine,
      imageRef,
      { kind: "bundled", base: baseImage, extraCaCerts: process.env.NODE_EXTRA_CA_CERTS },
      { onOutput: (line) => lines.push(line) },
    );
    expect(lines.length).toBeGreaterThan(0);

    const { stdout } = await execa("docker", [
      "run",
      "--rm",
      imageRef,
      "sh",
      "-c",
      "claude --version; git --version; rg --version | head -1; id -un; echo $HOME",
    ]);
    const [claude, git, rg, user, home] = stdout.split("\n");
    expect(claude).toContain(defaults.claudeCodeVersion);
    expect(git).toMatch(/^git version /);
    expect(rg).toMatch(/^ripgrep /);
    expect(user).toBe("claude");
    expect(home).toBe("/home/claude");

    const inspect = await engine.inspect(imageRef);
    const labels = (inspect.Config as { Labels: Record<string, string> }).Labels;
    expect(labels["dev.claude-bottle.image"]).toBe("bundled");
    expect(labels["dev.claude-bottle.claude-code-version"]).toBe(defaults.claudeCodeVersion);
    // The id the build reports is the image the tag names: backends run and cache by it.
    expect(id).toBe(inspect.Id);
  });

  it("reports a finished image's id without building or pulling it", async () => {
    const lines: string[] = [];
    const id = await buildAgentImage(
      engine,
      baseImage,
      { kind: "existing" },
      { onOutput: (line) => lines.push(line) },
    );
    expect(id).toBe((await engine.inspect(baseImage)).Id);
    expect(lines).toEqual([]);
  });

  it("fails with the build's own output when the base image does not exist", async () => {
    const error = await buildAgentImage(engine, "claude-bottle-test-broken:latest", {
      kind: "bundled",
      base: "claude-bottle-test/no-such-base:0",
    }).catch((e) => e);
    expect(error.code).toBe("PREPARE_FAILED");
    expect(error.message).toMatch(/^the base image claude-bottle-test\/no-such-base:0 is not available: /);
    expect(error.hint).toContain("CLAUDE_BOTTLE_BASE_IMAGE");
  });
});
