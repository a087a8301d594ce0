// The in-process registry's HTTP side, on a real socket, with a small image made here: what a puller
// (crane inside smolvm, the Docker engine) asks for and what it must get back.
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type EphemeralRegistry, startEphemeralRegistry } from "./ephemeral-registry.js";
import {
  type ExportedImage,
  ociConfigType,
  ociManifestType,
  ociUncompressedLayerType,
} from "./image-export.js";

const digestOf = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

let dir: string;
let image: ExportedImage;
let registry: EphemeralRegistry;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cb-registry."));
  const layerBytes = Buffer.from("not really a tar, but bytes with a digest\n");
  const layerPath = join(dir, "layer");
  await writeFile(layerPath, layerBytes);
  const layer = {
    mediaType: ociUncompressedLayerType,
    digest: digestOf(layerBytes),
    size: layerBytes.length,
  };
  const config = Buffer.from(JSON.stringify({ rootfs: { type: "layers", diff_ids: [layer.digest] } }));
  const configDescriptor = { mediaType: ociConfigType, digest: digestOf(config), size: config.length };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifestType,
      config: configDescriptor,
      layers: [layer],
    }),
  );
  image = {
    manifest: {
      descriptor: { mediaType: ociManifestType, digest: digestOf(manifest), size: manifest.length },
      bytes: manifest,
    },
    config: { descriptor: configDescriptor, bytes: config },
    layer: { descriptor: layer, path: layerPath },
  };
  registry = await startEphemeralRegistry();
});
afterEach(async () => {
  await registry.close();
  await rm(dir, { recursive: true, force: true });
});

/** One request as a puller sends it, with the Host header it would send. */
function call(
  method: string,
  path: string,
  host = `127.0.0.1:${registry.port}`,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: registry.port, method, path, headers: { host } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("the in-process registry", () => {
  it("serves a pushed image by tag and by digest, with the digests and types a puller checks", async () => {
    const ref = await registry.push("claude-bottle", "0123456789abcdef", image);
    // Served from the file opened at push: its name may go at once.
    await rm(image.layer.path);
    expect(ref).toBe(`localhost:${registry.port}/claude-bottle:0123456789abcdef`);

    const ping = await call("GET", "/v2/");
    expect(ping.status).toBe(200);
    expect(ping.headers["docker-distribution-api-version"]).toBe("registry/2.0");

    for (const reference of ["0123456789abcdef", image.manifest.descriptor.digest]) {
      const manifest = await call(
        "GET",
        `/v2/claude-bottle/manifests/${reference}`,
        `localhost:${registry.port}`,
      );
      expect(manifest.status).toBe(200);
      expect(manifest.headers["content-type"]).toBe(ociManifestType);
      expect(manifest.headers["docker-content-digest"]).toBe(image.manifest.descriptor.digest);
      expect(digestOf(manifest.body)).toBe(image.manifest.descriptor.digest);
      expect(Number(manifest.headers["content-length"])).toBe(image.manifest.bytes.length);
    }
    const head = await call("HEAD", "/v2/claude-bottle/manifests/0123456789abcdef");
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(Number(head.headers["content-length"])).toBe(image.manifest.bytes.length);

    for (const blob of [image.config.descriptor, image.layer.descriptor]) {
      const got = await call("GET", `/v2/claude-bottle/blobs/${blob.digest}`);
      expect(got.status).toBe(200);
      expect(digestOf(got.body)).toBe(blob.digest);
      expect(got.headers["docker-content-digest"]).toBe(blob.digest);
      expect(Number(got.headers["content-length"])).toBe(blob.size);
      const headBlob = await call("HEAD", `/v2/claude-bottle/blobs/${blob.digest}`);
      expect(headBlob.status).toBe(200);
      expect(Number(headBlob.headers["content-length"])).toBe(blob.size);
    }
  });

  it("is read-only and answers nothing it was not given", async () => {
    await registry.push("claude-bottle", "v1", image);
    for (const method of ["PUT", "POST", "PATCH", "DELETE"]) {
      const refused = await call(method, "/v2/claude-bottle/manifests/v1");
      expect(refused.status).toBe(405);
      expect(refused.headers.allow).toBe("GET, HEAD");
    }
    const upload = await call("POST", "/v2/claude-bottle/blobs/uploads/");
    expect(upload.status).toBe(405);
    // the manifest is still the one pushed
    const manifest = await call("GET", "/v2/claude-bottle/manifests/v1");
    expect(digestOf(manifest.body)).toBe(image.manifest.descriptor.digest);

    const unknown = [
      ["/v2/claude-bottle/manifests/v2", "MANIFEST_UNKNOWN"],
      [`/v2/claude-bottle/blobs/sha256:${"0".repeat(64)}`, "BLOB_UNKNOWN"],
      ["/v2/other/manifests/v1", "NAME_UNKNOWN"],
      [`/v2/other/blobs/${image.layer.descriptor.digest}`, "NAME_UNKNOWN"],
      ["/v2/_catalog", "NAME_UNKNOWN"],
      ["/", "NAME_UNKNOWN"],
    ];
    for (const [path, code] of unknown) {
      const answer = await call("GET", path!);
      expect(answer.status, path).toBe(404);
      expect(JSON.parse(answer.body.toString()).errors[0].code, path).toBe(code);
    }
    // a name other than loopback (DNS rebinding from a browser page) gets nothing
    const rebound = await call("GET", "/v2/claude-bottle/manifests/v1", `attacker.example:${registry.port}`);
    expect(rebound.status).toBe(404);
  });

  it("refuses a name or tag a reference cannot carry, and pushes once closed", async () => {
    await expect(registry.push("Claude-Bottle", "v1", image)).rejects.toThrow(/not a valid image name/);
    await expect(registry.push("claude-bottle", "-v1", image)).rejects.toThrow(/not a valid image name/);
    await registry.close();
    await expect(registry.push("claude-bottle", "v1", image)).rejects.toThrow(/closed/);
  });

  it("stops listening when closed, also with a pull still connected", async () => {
    await registry.push("claude-bottle", "v1", image);
    const { port } = registry;
    const open = await fetch(`http://127.0.0.1:${port}/v2/`);
    expect(open.status).toBe(200);
    await registry.close();
    await registry.close();
    await expect(fetch(`http://127.0.0.1:${port}/v2/`)).rejects.toThrow();
  });

  it("listens on 127.0.0.1 only", async () => {
    // The same port on another address of this machine (the Docker bridge's, at least) is not this
    // server: a container could reach that one.
    const other = Object.values(networkInterfaces())
      .flat()
      .find((address) => address && address.family === "IPv4" && !address.internal);
    expect(other, "this machine has an address besides loopback").toBeDefined();
    await expect(fetch(`http://${other!.address}:${registry.port}/v2/`)).rejects.toThrow();
  });
});
