// The export of an engine's image into a one-layer OCI image, and the in-process registry serving it
// to a real OCI puller: the Docker engine pulls it from 127.0.0.1 (which dockerd treats as an
// insecure registry by default, so plain HTTP) and runs it. That proves the manifest, the config and
// the flattened layer are valid OCI and that the flattened filesystem works.
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { extract, pack } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEphemeralRegistry } from "./ephemeral-registry.js";
import { ImageEngine } from "./image-engine.js";
import {
  exportImage,
  ociConfigType,
  ociManifestType,
  ociUncompressedLayerType,
  ownerLabels,
  roleLabel,
  sweepOrphanedContainers,
} from "./image-export.js";
import { containersCreatedSince, existingContainers, integrationEnvironment } from "./testing/index.js";

const { engine, baseImage } = integrationEnvironment();
const id = randomBytes(3).toString("hex");
const layeredImage = `claude-bottle-test-export:${id}`;
let root: string;

/** Export containers made since `since` that still exist (other processes' do not count). */
async function exportContainersLeft(since: Date): Promise<string[]> {
  return existingContainers(await containersCreatedSince(since, "export"));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-export."));
  // A few layers on scratch: a shell (dash and the libraries it needs, from the base image), two
  // files, and one file added and then deleted (a whiteout the flattened layer must not carry).
  const context = pack();
  context.entry(
    { name: "Dockerfile" },
    [
      `FROM ${baseImage} AS shell`,
      "RUN mkdir /out && cp --parents -L /bin/dash /bin/rm $(ldd /bin/dash /bin/rm | grep -o '/[^ :]*' | sort -u) /out",
      "FROM scratch",
      "COPY --from=shell /out/ /",
      "COPY a.txt /a.txt",
      "COPY b.txt /b.txt",
      "COPY a.txt /gone.txt",
      'RUN ["/bin/rm", "/gone.txt"]',
      "ENV GREETING=hello",
      "WORKDIR /srv",
      "LABEL dev.claude-bottle.test=exported",
      'ENTRYPOINT ["/bin/dash", "-c"]',
      'CMD ["echo \\"$GREETING in $(pwd)\\"; read -r a < /a.txt; read -r b < /b.txt; echo \\"$a; $b\\"; [ -e /gone.txt ] || echo gone"]',
    ].join("\n"),
  );
  context.entry({ name: "a.txt" }, "first layer\n");
  context.entry({ name: "b.txt" }, `second layer ${id}\n`);
  context.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of context) chunks.push(chunk as Buffer);
  await execa("docker", ["build", "--quiet", "--tag", layeredImage, "-"], { input: Buffer.concat(chunks) });
});
afterAll(async () => {
  await execa("docker", ["image", "rm", "--force", layeredImage], { reject: false });
  await rm(root, { recursive: true, force: true });
});

async function tarNames(path: string): Promise<string[]> {
  const names: string[] = [];
  const archive = extract();
  const done = (async () => {
    for await (const entry of archive) {
      names.push(entry.header.name.replace(/\/$/, ""));
      entry.resume();
    }
  })();
  archive.end(await readFile(path));
  await done;
  return names;
}

describe("exportImage and the in-process registry (real engine)", () => {
  it("exports one plain-tar layer and a config from the image; Docker pulls it from the registry and runs it", async () => {
    const since = new Date();
    const dir = await mkdtemp(join(root, "ok."));
    const exported = await exportImage(engine, layeredImage, dir);

    // One layer, uncompressed, named by its digest, which is right.
    const { layer, config, manifest } = exported;
    expect(layer.descriptor.mediaType).toBe(ociUncompressedLayerType);
    const bytes = await readFile(layer.path);
    expect(layer.path).toBe(join(dir, layer.descriptor.digest.slice("sha256:".length)));
    expect(`sha256:${createHash("sha256").update(bytes).digest("hex")}`).toBe(layer.descriptor.digest);
    expect(bytes.length).toBe(layer.descriptor.size);
    expect(await readdir(dir)).toEqual([layer.descriptor.digest.slice("sha256:".length)]);
    // The flattened filesystem: every file, and no whiteout of the deleted one.
    const names = await tarNames(layer.path);
    expect(names).toEqual(expect.arrayContaining(["a.txt", "b.txt", "bin/dash"]));
    expect(names.filter((name) => name.includes("gone"))).toEqual([]);

    // The config carries the image's settings and names the one layer.
    const parsed = JSON.parse(config.bytes.toString());
    expect(config.descriptor.mediaType).toBe(ociConfigType);
    expect(parsed.rootfs).toEqual({ type: "layers", diff_ids: [layer.descriptor.digest] });
    expect(parsed.os).toBe("linux");
    expect(parsed.config).toMatchObject({
      Env: expect.arrayContaining(["GREETING=hello"]),
      WorkingDir: "/srv",
      Labels: { "dev.claude-bottle.test": "exported" },
      Entrypoint: ["/bin/dash", "-c"],
    });
    expect(JSON.parse(manifest.bytes.toString())).toEqual({
      schemaVersion: 2,
      mediaType: ociManifestType,
      config: config.descriptor,
      layers: [layer.descriptor],
    });
    // The container it exported is gone.
    expect(await exportContainersLeft(since)).toEqual([]);

    await using registry = await startEphemeralRegistry();
    await registry.push("cb-test/export", id, exported);
    // As the smolmachines pipeline does: the registry serves the layer it opened, the files' names go.
    await rm(dir, { recursive: true });
    // dockerd resolves `localhost` itself and may try ::1 first; 127.0.0.1 is the address served.
    const pulled = `127.0.0.1:${registry.port}/cb-test/export:${id}`;
    try {
      await execa("docker", ["pull", "--quiet", pulled]);
      const { stdout } = await execa("docker", ["run", "--rm", "--network", "none", pulled]);
      expect(stdout.split("\n")).toEqual(["hello in /srv", `first layer; second layer ${id}`, "gone"]);
      const inspected = await engine.inspect(pulled);
      expect((inspected.RootFS as { Layers: string[] }).Layers).toEqual([layer.descriptor.digest]);
      expect(inspected.Id).toBe(config.descriptor.digest);
    } finally {
      await execa("docker", ["image", "rm", "--force", pulled], { reject: false });
    }
  });

  /**
   * The real docker CLI, except that `export` stops after its first 64 KiB and then runs `after`
   * (a shell line), as an engine that fails or stalls mid-export would.
   */
  const engineWhoseExport = async (name: string, after: string): Promise<ImageEngine> => {
    const cli = join(root, `docker-export-${name}-${id}`);
    await writeFile(
      cli,
      `#!/bin/sh\nif [ "$1" = export ]; then docker "$@" | head -c 65536; ${after}; fi\nexec docker "$@"\n`,
    );
    await chmod(cli, 0o755);
    return new ImageEngine({ binary: cli });
  };

  it("a failure mid-export leaves no container and no file, and says what failed", async () => {
    const since = new Date();
    const dir = await mkdtemp(join(root, "broken."));
    // `export` breaks after 64 KiB, as an engine that went away would.
    const breaking = await engineWhoseExport("breaks", 'echo "unexpected EOF" >&2; exit 1');
    const error = await exportImage(breaking, layeredImage, dir).catch((e) => e);
    expect(error).toMatchObject({ code: "PREPARE_FAILED", message: expect.stringContaining("exporting") });
    expect(await readdir(dir)).toEqual([]);
    expect(await containersCreatedSince(since, "export")).toHaveLength(1);
    expect(await exportContainersLeft(since)).toEqual([]);
  });

  it("an image that is not there: a clear error, no container, no file", async () => {
    const since = new Date();
    const dir = await mkdtemp(join(root, "missing."));
    const error = await exportImage(engine, `claude-bottle-test-no-such-image:${id}`, dir).catch((e) => e);
    expect(error).toMatchObject({
      code: "PREPARE_FAILED",
      message: expect.stringContaining("no-such-image"),
    });
    expect(await readdir(dir)).toEqual([]);
    expect(await exportContainersLeft(since)).toEqual([]);
  });

  it("cancelled mid-export: ABORTED, no container, no file", async () => {
    const since = new Date();
    const dir = await mkdtemp(join(root, "cancelled."));
    const stalling = await engineWhoseExport("stalls", "exec sleep 60");
    const controller = new AbortController();
    const exporting = exportImage(stalling, layeredImage, dir, {
      signal: controller.signal,
    }).catch((e) => e);
    // Once the export has begun writing its layer.
    for (let i = 0; i < 200 && (await readdir(dir)).length === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(await readdir(dir)).toHaveLength(1);
    controller.abort();
    expect(await exporting).toMatchObject({ code: "ABORTED" });
    expect(await readdir(dir)).toEqual([]);
    expect(await exportContainersLeft(since)).toEqual([]);
  });

  it("a sweep removes the export (and old registry) containers whose owner is gone, and keeps the rest", async () => {
    // A host name of this test's own, so the sweep judges only the containers made here.
    const host = `cb-test-host-${id}`;
    const make = async (role: string, pid: number, bootId: string, owner = host) => {
      const name = `cb-test-sweep-${role}-${pid}-${bootId}-${randomBytes(2).toString("hex")}`;
      await engine.exec(
        [
          "create",
          "--name",
          name,
          "--label",
          `${roleLabel}=${role}`,
          "--label",
          `${ownerLabels.pid}=${pid}`,
          "--label",
          `${ownerLabels.bootId}=${bootId}`,
          "--label",
          `${ownerLabels.host}=${owner}`,
          layeredImage,
        ],
        "RUN_FAILED",
        "creating a test container",
      );
      return name;
    };
    const dead = await make("export", 999_001, "b");
    const oldBoot = await make("export", 999_002, "a");
    const oldRegistry = await make("registry", 999_001, "b");
    const alive = await make("export", 999_003, "b");
    const elsewhere = await make("export", 999_001, "b", `${host}-other`);
    try {
      const swept = await sweepOrphanedContainers(engine, {
        host,
        bootId: "b",
        isAlive: (pid) => pid === 999_003,
      });
      expect(swept.sort()).toEqual([dead, oldBoot, oldRegistry].sort());
      expect((await existingContainers([dead, oldBoot, oldRegistry, alive, elsewhere])).sort()).toEqual(
        [alive, elsewhere].sort(),
      );
    } finally {
      for (const name of [dead, oldBoot, oldRegistry, alive, elsewhere]) await engine.removeContainer(name);
    }
  });
});
