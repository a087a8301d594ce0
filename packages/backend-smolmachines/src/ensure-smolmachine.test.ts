// The original unit test of the smolmachines pipeline, ported with every assertion kept: a cache
// hit returns without touching registry or pack; a miss runs build → tag → push → pack in order
// against the port the registry helper yields. With the in-process registry, "tag + push" is one
// call: the registry serves the exported image under `localhost:PORT/<name>:<digest>`.
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EphemeralRegistry, ExportedImage } from "@claude-bottle/container-engine";
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

const exported = { layer: { path: "/nowhere" } } as unknown as ExportedImage;

/** A registry handle as the helper yields it: its port, and what was pushed to it. */
function fakeRegistry(port: number, calls: string[]) {
  const close = async () => {
    calls.push("registry closed");
  };
  return {
    port,
    push: vi.fn(async (name: string, tag: string, _image: ExportedImage) => {
      calls.push("push");
      return `localhost:${port}/${name}:${tag}`;
    }),
    close,
    [Symbol.asyncDispose]: close,
  } satisfies EphemeralRegistry;
}

function deps(digest: string, calls: string[] = []) {
  const registry = fakeRegistry(54321, calls);
  /** Each folder the export was given, with its mode then. */
  const exportDirs: { dir: string; mode: number }[] = [];
  /** Whether the export folder was still there when smolvm was asked to pack. */
  const exportDirAtPack: boolean[] = [];
  return {
    registry,
    exportDirs,
    exportDirAtPack,
    cacheDir,
    buildImage: vi.fn(async () => {
      calls.push("build");
      return `sha256:${digest}${"f".repeat(48)}`;
    }),
    exportImage: vi.fn(async (_source: string, dir: string) => {
      exportDirs.push({ dir, mode: (await stat(dir)).mode & 0o777 });
      await writeFile(join(dir, "layer"), "bytes");
      calls.push("export");
      return exported;
    }),
    openRegistry: vi.fn(async () => {
      calls.push("registry started");
      return registry;
    }),
    sweepContainers: vi.fn(async () => []),
    smolvm: {
      packCreate: vi.fn(async () => {
        calls.push("pack");
        const dir = exportDirs.at(-1)?.dir;
        exportDirAtPack.push(
          dir !== undefined &&
            (await stat(dir).then(
              () => true,
              () => false,
            )),
        );
        return { publish: async () => {}, discard: async () => {} };
      }),
    },
  } satisfies EnsureSmolmachineDeps & Record<string, unknown>;
}

describe("ensureSmolmachine", () => {
  it("on a cache hit, builds but skips export, registry, push and pack", async () => {
    const digest = "abcdef0123456789";
    const sidecar = join(cacheDir, `${digest}.smolmachine.smolmachine`);
    await writeFile(sidecar, "");
    const d = deps(digest);

    const result = await ensureSmolmachine("claude-bottle:latest", d);

    expect(result).toBe(sidecar);
    // build still runs (Dockerfile edits land without manual rmi)
    expect(d.buildImage).toHaveBeenCalledOnce();
    // no export, no registry, no push, no pack on a cache hit
    expect(d.exportImage).not.toHaveBeenCalled();
    expect(d.openRegistry).not.toHaveBeenCalled();
    expect(d.registry.push).not.toHaveBeenCalled();
    expect(d.smolvm.packCreate).not.toHaveBeenCalled();
    // nor does it look for other processes' leftovers
    expect(d.sweepContainers).not.toHaveBeenCalled();
  });

  it("on a cache miss, runs build → export → tag + push → pack in order against the registry's port", async () => {
    const digest = "0123456789abcdef";
    const calls: string[] = [];
    const d = deps(digest, calls);

    const result = await ensureSmolmachine("claude-bottle:latest", d);

    // build first (no point exporting if the build fails), then push → pack against the registry
    // port; the registry is closed only after the pack.
    expect(calls).toEqual(["build", "export", "registry started", "push", "pack", "registry closed"]);
    // containers that killed prepares left behind are swept before this one exports
    expect(d.sweepContainers.mock.invocationCallOrder[0]).toBeLessThan(
      d.exportImage.mock.invocationCallOrder[0]!,
    );

    // the image is exported by its id into a private folder of the cache, under the partial prefix
    // (so a killed pack's is removed by the next miss), and that folder is gone afterwards
    const [source, dir] = d.exportImage.mock.calls[0]!;
    expect(source).toBe(`sha256:${digest}${"f".repeat(48)}`);
    expect(dir.startsWith(join(cacheDir, `.partial-${digest}-`))).toBe(true);
    expect(d.exportDirs[0]!.mode).toBe(0o700);
    // once pushed (the registry holds the layer open) the exported files' names are gone, before the pack
    expect(d.exportDirAtPack).toEqual([false]);
    // the push tags the exported image with the digest, so different builds get different tags
    expect(d.registry.push).toHaveBeenCalledWith("claude-bottle", digest, exported);
    // pack reads from the registry ref and writes the stub beside the cached sidecar
    const [packRef, packStub] = d.smolvm.packCreate.mock.calls[0] as unknown as [string, string];
    expect(packRef).toBe(`localhost:54321/claude-bottle:${digest}`);
    expect(packStub.endsWith(`${digest}.smolmachine`)).toBe(true);
    expect(packStub).toBe(join(cacheDir, `${digest}.smolmachine`));
    expect(result).toBe(join(cacheDir, `${digest}.smolmachine.smolmachine`));
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it("starts no registry when the build or the export fails, closes it when the pack fails, and always removes the export", async () => {
    const failingBuild = deps("0123456789abcdef");
    failingBuild.buildImage.mockRejectedValueOnce(new Error("build broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingBuild)).rejects.toThrow("build broke");
    expect(failingBuild.exportImage).not.toHaveBeenCalled();
    expect(failingBuild.openRegistry).not.toHaveBeenCalled();

    const failingExport = deps("0123456789abcdef");
    failingExport.exportImage.mockImplementationOnce(async (_source, dir) => {
      await writeFile(join(dir, "layer-half.partial"), "half a layer");
      throw new Error("export broke");
    });
    await expect(ensureSmolmachine("claude-bottle:latest", failingExport)).rejects.toThrow("export broke");
    expect(failingExport.openRegistry).not.toHaveBeenCalled();
    expect(failingExport.smolvm.packCreate).not.toHaveBeenCalled();
    expect(await readdir(cacheDir)).toEqual([]);

    const calls: string[] = [];
    const failingPack = deps("0123456789abcdef", calls);
    failingPack.smolvm.packCreate.mockRejectedValueOnce(new Error("pack broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingPack)).rejects.toThrow("pack broke");
    expect(calls).toEqual(["build", "export", "registry started", "push", "registry closed"]);
    expect(await readdir(cacheDir)).toEqual([]);

    // a registry that fails to start fails the prepare with its own error, and nothing is packed
    const failingRegistry = deps("0123456789abcdef");
    failingRegistry.openRegistry.mockRejectedValueOnce(new Error("registry broke"));
    await expect(ensureSmolmachine("claude-bottle:latest", failingRegistry)).rejects.toThrow(
      "registry broke",
    );
    expect(failingRegistry.smolvm.packCreate).not.toHaveBeenCalled();
    expect(await readdir(cacheDir)).toEqual([]);
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
