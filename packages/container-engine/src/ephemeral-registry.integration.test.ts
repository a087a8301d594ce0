import { randomBytes } from "node:crypto";
import { BottleError } from "@claude-bottle/core";
import { execa } from "execa";
import { pack } from "tar-stream";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  localRegistryRef,
  registryOwnerLabels,
  startEphemeralRegistry,
  sweepOrphanedRegistries,
  withEphemeralRegistry,
} from "./ephemeral-registry.js";
import { ociUncompressedLayerType, pushUncompressed } from "./registry-upload.js";
import { existingContainers, integrationEnvironment, registriesCreatedSince } from "./testing/index.js";

const { engine, registryImage, baseImage } = integrationEnvironment();
const silentImage = "claude-bottle-test-silent:latest";
const emptyImage = "claude-bottle-test-empty:latest";
const layeredImage = `claude-bottle-test-layered:${randomBytes(3).toString("hex")}`;
const twiceImage = `claude-bottle-test-twice:${randomBytes(3).toString("hex")}`;

let testStart = new Date();
beforeEach(() => {
  testStart = new Date();
});

/** Registry containers this test created that still exist (other processes' registries do not count). */
async function registryContainers(): Promise<string> {
  return (await existingContainers(await registriesCreatedSince(testStart))).join("\n");
}

beforeAll(async () => {
  // An image that runs but never answers HTTP, to prove the readiness timeout.
  await execa("docker", ["build", "--quiet", "--tag", silentImage, "-"], {
    input: `FROM ${baseImage}\nCMD ["sleep", "infinity"]\n`,
  });
  // A config-only image, cheap to push.
  await execa("docker", ["build", "--quiet", "--tag", emptyImage, "-"], {
    input: "FROM scratch\nLABEL dev.claude-bottle.test=empty\n",
  });
  // Two small layers, built from a context streamed in as a tar.
  const context = pack();
  context.entry({ name: "Dockerfile" }, "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n");
  context.entry({ name: "a.txt" }, "first layer\n");
  context.entry({ name: "b.txt" }, `second layer ${randomBytes(8).toString("hex")}\n`);
  context.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of context) chunks.push(chunk as Buffer);
  await execa("docker", ["build", "--quiet", "--tag", layeredImage, "-"], { input: Buffer.concat(chunks) });
});
afterAll(async () => {
  await execa("docker", ["image", "rm", "--force", silentImage, emptyImage, layeredImage, twiceImage], {
    reject: false,
  });
});

describe("ephemeral registry (real engine)", () => {
  it("answers GET /v2/ on 127.0.0.1, accepts a push, and is removed afterwards", async () => {
    let port = 0;
    await withEphemeralRegistry(engine, { image: registryImage }, async (registry) => {
      port = registry.port;
      const inspect = await engine.inspect(registry.container);
      const bindings = (inspect.HostConfig as { PortBindings: Record<string, { HostIp: string }[]> })
        .PortBindings;
      expect(bindings["5000/tcp"]?.[0]?.HostIp).toBe("127.0.0.1");
      expect((await fetch(`http://127.0.0.1:${port}/v2/`)).status).toBe(200);

      const ref = localRegistryRef(port, "cb-test/empty", "v1");
      await engine.tag(emptyImage, ref);
      await engine.push(ref);
      await engine.exec(["image", "rm", ref], "RUN_FAILED", "cleanup");
      const manifest = await fetch(`http://127.0.0.1:${port}/v2/cb-test/empty/manifests/v1`, {
        headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" },
      });
      expect(manifest.status).toBe(200);
    });
    expect(await registryContainers()).toBe("");
    await expect(fetch(`http://127.0.0.1:${port}/v2/`)).rejects.toThrow();
  });

  it("is removed when the work fails", async () => {
    await expect(
      withEphemeralRegistry(engine, { image: registryImage }, async () => {
        throw new Error("work failed");
      }),
    ).rejects.toThrow("work failed");
    expect(await registryContainers()).toBe("");
  });

  it("fails with a clear error for a missing image, and leaves nothing", async () => {
    const error = await startEphemeralRegistry(engine, {
      image: "claude-bottle-test/no-such-registry:0",
    }).catch((e) => e);
    expect(BottleError.is(error)).toBe(true);
    expect(error.code).toBe("REGISTRY_FAILED");
    expect(error.message).toContain("claude-bottle-test/no-such-registry:0 is not available");
    expect(error.hint).toContain("registry.image");
    expect(await registryContainers()).toBe("");
  });

  it("times out when the registry never answers, and leaves nothing", async () => {
    const error = await startEphemeralRegistry(engine, { image: silentImage, readyTimeoutMs: 1500 }).catch(
      (e) => e,
    );
    expect(error.code).toBe("REGISTRY_FAILED");
    expect(error.message).toMatch(/did not answer GET \/v2\/ within 2 s/);
    expect(await registryContainers()).toBe("");
  });

  it("releases the registry through await using", async () => {
    let container = "";
    {
      await using registry = await startEphemeralRegistry(engine, { image: registryImage });
      container = registry.container;
      expect(await registryContainers()).not.toBe("");
    }
    expect(container).toMatch(/^claude-bottle-registry-/);
    expect(await registryContainers()).toBe("");
  });

  it("labels each registry with its owner; a sweep removes those whose owner is gone and keeps the rest", async () => {
    // A host name of this test's own, so the sweep judges only the registries made here.
    const host = `cb-test-host-${randomBytes(3).toString("hex")}`;
    const dead = await startEphemeralRegistry(engine, {
      image: registryImage,
      owner: { pid: 999_001, bootId: "b", host },
    });
    const oldBoot = await startEphemeralRegistry(engine, {
      image: registryImage,
      owner: { pid: 999_002, bootId: "a", host },
    });
    const alive = await startEphemeralRegistry(engine, {
      image: registryImage,
      owner: { pid: 999_003, bootId: "b", host },
    });
    const elsewhere = await startEphemeralRegistry(engine, {
      image: registryImage,
      owner: { pid: 999_001, bootId: "b", host: `${host}-other` },
    });
    try {
      const labels = (await engine.inspect(dead.container)).Config as { Labels: Record<string, string> };
      expect(labels.Labels).toMatchObject({
        [registryOwnerLabels.pid]: "999001",
        [registryOwnerLabels.bootId]: "b",
        [registryOwnerLabels.host]: host,
      });
      const swept = await sweepOrphanedRegistries(engine, {
        host,
        bootId: "b",
        isAlive: (pid) => pid === 999_003,
      });
      expect(swept.sort()).toEqual([dead.container, oldBoot.container].sort());
      expect(
        (
          await existingContainers([dead.container, oldBoot.container, alive.container, elsewhere.container])
        ).sort(),
      ).toEqual([alive.container, elsewhere.container].sort());
    } finally {
      for (const registry of [dead, oldBoot, alive, elsewhere]) await registry.close();
    }
    expect(await registryContainers()).toBe("");
  });

  it("takes an image uncompressed: the manifest names the image's own config and its layers' diff ids as plain tars", async () => {
    await withEphemeralRegistry(engine, { image: registryImage }, async (registry) => {
      // Saved by id, with no tag for the registry in the engine.
      const source = (await engine.inspect(layeredImage)).Id as string;
      await pushUncompressed(engine, source, localRegistryRef(registry.port, "cb-test/layered", "v1"));
      const base = `http://127.0.0.1:${registry.port}/v2/cb-test/layered`;
      const manifest = (await (
        await fetch(`${base}/manifests/v1`, {
          headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
        })
      ).json()) as { config: { digest: string }; layers: { digest: string; mediaType: string }[] };
      const inspected = await engine.inspect(layeredImage);
      const diffIds = (inspected.RootFS as { Layers: string[] }).Layers;
      expect(manifest.config.digest).toBe(inspected.Id);
      expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(diffIds);
      expect(new Set(manifest.layers.map((layer: { mediaType: string }) => layer.mediaType))).toEqual(
        new Set([ociUncompressedLayerType]),
      );
      // What the registry serves is a plain tar with the file in it.
      const blob = Buffer.from(await (await fetch(`${base}/blobs/${diffIds[1]}`)).arrayBuffer());
      expect(blob.subarray(257, 262).toString()).toBe("ustar");
      expect(blob.toString("latin1")).toContain("second layer");
    });
  });

  it("takes an image with two identical layers, which docker save writes once and links to", async () => {
    const context = pack();
    context.entry({ name: "Dockerfile" }, "FROM scratch\nCOPY a.txt /a.txt\nCOPY a.txt /a.txt\n");
    context.entry({ name: "a.txt" }, `the same layer twice ${randomBytes(8).toString("hex")}\n`);
    context.finalize();
    const chunks: Buffer[] = [];
    for await (const chunk of context) chunks.push(chunk as Buffer);
    await execa("docker", ["build", "--quiet", "--tag", twiceImage, "-"], { input: Buffer.concat(chunks) });
    const inspected = await engine.inspect(twiceImage);
    const diffIds = (inspected.RootFS as { Layers: string[] }).Layers;
    expect(new Set(diffIds).size).toBe(1);
    await withEphemeralRegistry(engine, { image: registryImage }, async (registry) => {
      await pushUncompressed(engine, twiceImage, localRegistryRef(registry.port, "cb-test/twice", "v1"));
      const manifest = (await (
        await fetch(`http://127.0.0.1:${registry.port}/v2/cb-test/twice/manifests/v1`, {
          headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
        })
      ).json()) as { config: { digest: string }; layers: { digest: string }[] };
      expect(manifest.config.digest).toBe(inspected.Id);
      expect(manifest.layers.map((layer) => layer.digest)).toEqual(diffIds);
    });
  });

  it("an uncompressed push to a registry that went away fails with what happened", async () => {
    const registry = await startEphemeralRegistry(engine, { image: registryImage });
    const ref = localRegistryRef(registry.port, "cb-test/gone", "v1");
    await registry.close();
    const error = await pushUncompressed(engine, layeredImage, ref).catch((e) => e);
    expect(error).toMatchObject({
      code: "REGISTRY_FAILED",
      message: expect.stringMatching(/^pushing localhost:\d+\/cb-test\/gone:v1 failed: /),
    });
    await expect(pushUncompressed(engine, layeredImage, "ghcr.io/acme/agent:1")).rejects.toMatchObject({
      code: "REGISTRY_FAILED",
    });
    // A registry that never came up: its own error, as it was.
    const failed = new BottleError("REGISTRY_FAILED", "the local registry did not start");
    await expect(pushUncompressed(engine, layeredImage, Promise.reject(failed))).rejects.toBe(failed);
  });
});
