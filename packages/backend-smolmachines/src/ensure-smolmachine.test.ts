// The original unit test of the smolmachines pipeline, ported with every assertion kept: a cache
// hit returns without touching registry or pack; a miss runs build → tag → push → pack in order
// against the port the registry helper yields.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EphemeralRegistry } from "@claude-bottle/container-engine";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type EnsureSmolmachineDeps,
  ensureSmolmachine,
  imageDigest,
  repositoryName,
} from "./ensure-smolmachine.js";

let cacheDir: string;

beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), "cb-cache."));
});
afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

/** A registry handle as the helper yields it: only the port matters to the pipeline. */
function fakeRegistry(port: number, onClose: () => void = () => {}): EphemeralRegistry {
  const close = async () => onClose();
  return { port, container: "fake-registry", close, [Symbol.asyncDispose]: close };
}

function deps(digest: string, calls: string[] = []) {
  const record = (name: string) => vi.fn(async () => void calls.push(name));
  return {
    cacheDir,
    buildImage: vi.fn(async () => {
      calls.push("build");
      return `sha256:${digest}${"f".repeat(48)}`;
    }),
    engine: {
      tag: record("tag"),
      push: record("push"),
    },
    openRegistry: vi.fn(async () => fakeRegistry(54321, () => calls.push("registry closed"))),
    sweepRegistries: vi.fn(async () => []),
    smolvm: {
      packCreate: vi.fn(async () => {
        calls.push("pack");
        return { publish: async () => {}, discard: async () => {} };
      }),
    },
  } satisfies EnsureSmolmachineDeps;
}

describe("ensureSmolmachine", () => {
  it("on a cache hit, builds but skips registry, tag, push and pack", async () => {
    const digest = "abcdef0123456789";
    const sidecar = join(cacheDir, `${digest}.smolmachine.smolmachine`);
    await writeFile(sidecar, "");
    const d = deps(digest);

    const result = await ensureSmolmachine("claude-bottle:latest", d);

    expect(result).toBe(sidecar);
    // build still runs (Dockerfile edits land without manual rmi)
    expect(d.buildImage).toHaveBeenCalledOnce();
    // no registry, no tag, no push, no pack on a cache hit
    expect(d.openRegistry).not.toHaveBeenCalled();
    expect(d.engine.tag).not.toHaveBeenCalled();
    expect(d.engine.push).not.toHaveBeenCalled();
    expect(d.smolvm.packCreate).not.toHaveBeenCalled();
    // nor does it look for other processes' registries
    expect(d.sweepRegistries).not.toHaveBeenCalled();
  });

  it("on a cache miss, runs build → tag → push → pack in order against the registry's port", async () => {
    const digest = "0123456789abcdef";
    const calls: string[] = [];
    const d = deps(digest, calls);

    const result = await ensureSmolmachine("claude-bottle:latest", d);

    // build first (no point pushing if the build fails), then tag → push → pack against the
    // registry port; the registry is released only after the pack.
    expect(calls).toEqual(["build", "tag", "push", "pack", "registry closed"]);
    // registries that killed prepares left behind are swept before this one starts its own
    expect(d.sweepRegistries.mock.invocationCallOrder[0]).toBeLessThan(
      d.openRegistry.mock.invocationCallOrder[0]!,
    );

    // tag goes from the source ref to a localhost ref with the digest as the tag, so different
    // builds land on different tags in the registry
    expect(d.engine.tag).toHaveBeenCalledWith(
      "claude-bottle:latest",
      `localhost:54321/claude-bottle:${digest}`,
    );
    // push targets the same localhost ref
    expect(d.engine.push).toHaveBeenCalledWith(`localhost:54321/claude-bottle:${digest}`);
    // pack reads from the registry ref and writes the stub beside the cached sidecar
    const [packRef, packStub] = d.smolvm.packCreate.mock.calls[0] as unknown as [string, string];
    expect(packRef).toBe(`localhost:54321/claude-bottle:${digest}`);
    expect(packStub.endsWith(`${digest}.smolmachine`)).toBe(true);
    expect(packStub).toBe(join(cacheDir, `${digest}.smolmachine`));
    expect(result).toBe(join(cacheDir, `${digest}.smolmachine.smolmachine`));
  });

  it("does not start a registry when the build fails, and releases it when the push fails", async () => {
    const failingBuild = deps("0123456789abcdef");
    failingBuild.buildImage.mockRejectedValueOnce(new Error("build broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingBuild)).rejects.toThrow("build broke");
    expect(failingBuild.openRegistry).not.toHaveBeenCalled();

    const calls: string[] = [];
    const failingPush = deps("0123456789abcdef", calls);
    failingPush.engine.push.mockRejectedValueOnce(new Error("push broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingPush)).rejects.toThrow("push broke");
    expect(calls).toEqual(["build", "tag", "registry closed"]);
    expect(failingPush.smolvm.packCreate).not.toHaveBeenCalled();
  });
});

describe("imageDigest", () => {
  it("is the first 16 hex characters after sha256:", () => {
    expect(imageDigest("sha256:0123456789abcdeffedcba")).toBe("0123456789abcdef");
    expect(() => imageDigest("sha256:xyz")).toThrow("not an image id");
  });
});

describe("repositoryName", () => {
  it.each([
    ["claude-bottle:latest", "claude-bottle"],
    ["claude-bottle", "claude-bottle"],
    ["ghcr.io/acme/agent:1", "acme/agent"],
    ["localhost:5000/agent:dev", "agent"],
    ["acme/agent@sha256:0123", "acme/agent"],
    ["registry.example.com:443/team/agent", "team/agent"],
  ])("%s → %s", (ref, name) => {
    expect(repositoryName(ref)).toBe(name);
  });
});
