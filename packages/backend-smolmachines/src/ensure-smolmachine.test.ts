// The original unit test of the smolmachines pipeline, ported with every assertion kept: a cache
// hit returns without touching registry or pack; a miss runs build → push → pack in order
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
  return {
    cacheDir,
    buildImage: vi.fn(async () => {
      calls.push("build");
      return `sha256:${digest}${"f".repeat(48)}`;
    }),
    // The push waits for the registry's address, as the real one's first bytes do.
    push: vi.fn(async (_source: string, target: Promise<string>) => {
      await target;
      calls.push("push");
    }),
    openRegistry: vi.fn(async () => {
      calls.push("registry started");
      return fakeRegistry(54321, () => calls.push("registry closed"));
    }),
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
  it("on a cache hit, builds but skips registry, push and pack", async () => {
    const digest = "abcdef0123456789";
    const sidecar = join(cacheDir, `${digest}.smolmachine.smolmachine`);
    await writeFile(sidecar, "");
    const d = deps(digest);

    const result = await ensureSmolmachine("claude-bottle:latest", d);

    expect(result).toBe(sidecar);
    // build still runs (Dockerfile edits land without manual rmi)
    expect(d.buildImage).toHaveBeenCalledOnce();
    // no registry, no push, no pack on a cache hit
    expect(d.openRegistry).not.toHaveBeenCalled();
    expect(d.push).not.toHaveBeenCalled();
    expect(d.smolvm.packCreate).not.toHaveBeenCalled();
    // nor does it look for other processes' registries
    expect(d.sweepRegistries).not.toHaveBeenCalled();
  });

  it("on a cache miss, runs build → push → pack in order against the registry's port", async () => {
    const digest = "0123456789abcdef";
    const calls: string[] = [];
    const d = deps(digest, calls);

    const result = await ensureSmolmachine("claude-bottle:latest", d);

    // build first (no point pushing if the build fails), then push → pack against the registry
    // port; the registry is released only after the pack.
    expect(calls).toEqual(["build", "registry started", "push", "pack", "registry closed"]);
    // registries that killed prepares left behind are swept before this one starts its own
    expect(d.sweepRegistries.mock.invocationCallOrder[0]).toBeLessThan(
      d.openRegistry.mock.invocationCallOrder[0]!,
    );

    // the push saves the built image by its id and goes to a localhost ref with the digest as the
    // tag, so different builds land on different tags in the registry
    const [source, target] = d.push.mock.calls[0]!;
    expect(source).toBe(`sha256:${digest}${"f".repeat(48)}`);
    expect(await target).toBe(`localhost:54321/claude-bottle:${digest}`);
    // pack reads from the registry ref and writes the stub beside the cached sidecar
    const [packRef, packStub] = d.smolvm.packCreate.mock.calls[0] as unknown as [string, string];
    expect(packRef).toBe(`localhost:54321/claude-bottle:${digest}`);
    expect(packStub.endsWith(`${digest}.smolmachine`)).toBe(true);
    expect(packStub).toBe(join(cacheDir, `${digest}.smolmachine`));
    expect(result).toBe(join(cacheDir, `${digest}.smolmachine.smolmachine`));
  });

  it("starts the push while the registry is still starting", async () => {
    const d = deps("0123456789abcdef");
    let registryUp = () => {};
    const up = new Promise<void>((resolve) => {
      registryUp = resolve;
    });
    d.openRegistry.mockImplementationOnce(async () => {
      await up;
      return fakeRegistry(54321);
    });
    const running = ensureSmolmachine("claude-bottle:latest", d);
    await vi.waitFor(() => expect(d.push).toHaveBeenCalledOnce());
    registryUp();
    await running;
    expect(d.smolvm.packCreate).toHaveBeenCalledOnce();
  });

  it("does not start a registry when the build fails, and releases it when the push fails", async () => {
    const failingBuild = deps("0123456789abcdef");
    failingBuild.buildImage.mockRejectedValueOnce(new Error("build broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingBuild)).rejects.toThrow("build broke");
    expect(failingBuild.openRegistry).not.toHaveBeenCalled();

    const calls: string[] = [];
    const failingPush = deps("0123456789abcdef", calls);
    failingPush.push.mockRejectedValueOnce(new Error("push broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingPush)).rejects.toThrow("push broke");
    expect(calls).toEqual(["build", "registry started", "registry closed"]);
    expect(failingPush.smolvm.packCreate).not.toHaveBeenCalled();

    // a registry that fails to start fails the push with its own error, and nothing is packed
    const failingRegistry = deps("0123456789abcdef");
    failingRegistry.openRegistry.mockRejectedValueOnce(new Error("registry broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingRegistry)).rejects.toThrow(
      "registry broke",
    );
    expect(failingRegistry.smolvm.packCreate).not.toHaveBeenCalled();
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
