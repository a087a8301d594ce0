// `claudeCode.version: "latest"` against the real npm registry (as this machine's npm configuration
// names it), and what the resolved version does to an image build on the real engine. The build is
// of a small Dockerfile that uses the version the way the bundled one does (a build argument of a
// RUN step), so a new release's rebuild takes a second, not a Claude Code download.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type FetchJson,
  resolveClaudeCodeVersion,
  userNpmRegistry,
} from "@claude-bottle/core/claude-code-version";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAgentImage } from "./agent-image.js";
import { integrationEnvironment } from "./testing/index.js";

const { engine, baseImage } = integrationEnvironment();
const imageRef = `claude-bottle-test-ccv-${randomBytes(4).toString("hex")}:latest`;
const builtIds = new Set<string>();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cb-ccv-it-"));
  await writeFile(
    join(dir, "Dockerfile"),
    `FROM ${baseImage}\nARG CLAUDE_CODE_VERSION\nRUN echo "$CLAUDE_CODE_VERSION" > /claude-code-version\n`,
  );
});
afterAll(async () => {
  for (const id of builtIds) await execa("docker", ["image", "rm", "--force", id], { reject: false });
  await rm(dir, { recursive: true, force: true });
});

async function build(version: string): Promise<{ id: string; output: string[] }> {
  const output: string[] = [];
  const id = await buildAgentImage(
    engine,
    imageRef,
    { kind: "dockerfile", dockerfile: join(dir, "Dockerfile"), context: dir, claudeCodeVersion: version },
    { onOutput: (line) => output.push(line) },
  );
  builtIds.add(id);
  return { id, output };
}

const versionIn = async (ref: string) =>
  (await execa("docker", ["run", "--rm", ref, "cat", "/claude-code-version"])).stdout.trim();

describe("claudeCode.version latest (real npm registry, real engine)", () => {
  it("resolves latest once, answers from the cache after, and a new version rebuilds once", async () => {
    const registry = await userNpmRegistry();
    let requests = 0;
    const countingFetch: FetchJson = (url, init) => {
      requests++;
      return fetch(url, init);
    };
    let now = Date.now();
    const options = {
      cacheDir: join(dir, "cache"),
      registry,
      fetch: countingFetch,
      now: () => new Date(now),
    };

    const first = await resolveClaudeCodeVersion("latest", options);
    expect(first.from).toBe("registry");
    expect(first.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(requests).toBe(1);
    const cached = JSON.parse(await readFile(join(dir, "cache", "claude-code-versions.json"), "utf8"));
    expect(cached.entries[`${registry.url}@anthropic-ai/claude-code@latest`]).toEqual({
      version: first.version,
      resolvedAt: first.resolvedAt,
    });

    const second = await resolveClaudeCodeVersion("latest", options);
    expect(second).toMatchObject({ version: first.version, from: "cache" });
    expect(requests).toBe(1);

    // The image carries the resolved version; building again with it hits the cache.
    const built = await build(first.version);
    expect(await versionIn(imageRef)).toBe(first.version);
    const again = await build(second.version);
    expect(again.id).toBe(built.id);
    expect(again.output.join("\n")).toMatch(/Using cache|CACHED/);

    // A day later the registry is asked again.
    now += 25 * 60 * 60 * 1000;
    const nextDay = await resolveClaudeCodeVersion("latest", options);
    expect(nextDay.from).toBe("registry");
    expect(requests).toBe(2);

    // When the registry names a newer release: one rebuild, then the cache again.
    const [major, minor, patch] = first.version.split(/[.-]/).map(Number) as [number, number, number];
    const newer = `${major}.${minor}.${patch + 1}`;
    const rebuilt = await build(newer);
    expect(rebuilt.id).not.toBe(built.id);
    expect(await versionIn(imageRef)).toBe(newer);
    const rebuiltAgain = await build(newer);
    expect(rebuiltAgain.id).toBe(rebuilt.id);
  });
});
