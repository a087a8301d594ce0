/**
 * Push an image from the engine into a local registry with its layers uncompressed, through the
 * registry's HTTP API (OCI distribution spec: POST an upload, PATCH the bytes, PUT with the digest,
 * then PUT the manifest).
 *
 * Why not `docker push`: the engine gzips every layer as it pushes, on one core per layer; for the
 * bundled agent image (about 970 MB) that is about 21 of a 23 s smolmachines cache miss. The only
 * reader of this throwaway registry is smolvm's `pack create`, and its puller does not care how a
 * layer is compressed: smolvm fetches the manifest with `crane manifest`, takes `layers[].digest`
 * without looking at the media type, fetches each with `crane blob` (go-containerregistry
 * cmd/crane/cmd/blob.go: `layer.Compressed()` copied out as it is), and
 * `smolvm_oci_layer::decompress_layer_reader` (crates/smolvm-oci-layer/src/lib.rs) sniffs the
 * first bytes: gzip, zstd, or anything else passed through as a plain tar
 * (crates/smolvm-agent/src/storage.rs, `pull_image_with_progress_and_auth`; smolvm v1.9.x). So the
 * layers go up as `application/vnd.oci.image.layer.v1.tar`, exactly as `docker save` writes them.
 *
 * `docker save` streams a tar of the image (one `layer.tar` per layer and a `manifest.json` at the
 * end on older engines; an OCI layout under `blobs/sha256/` on newer ones). Every file in it is
 * uploaded as it streams past, hashed on the way (a layer's digest is then its diff id, and the
 * config's digest the image id); `manifest.json` says which file is the config and which are the
 * layers, in order.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { abortedError, BottleError, nodeHttp } from "@claude-bottle/core";
import { extract } from "tar-stream";
import type { ImageEngine } from "./image-engine.js";

export const ociManifestType = "application/vnd.oci.image.manifest.v1+json";
export const ociConfigType = "application/vnd.oci.image.config.v1+json";
export const ociUncompressedLayerType = "application/vnd.oci.image.layer.v1.tar";

interface Blob {
  digest: string;
  size: number;
}

/** `localhost:PORT/name:tag` → where the registry answers, the repository and the tag. */
export function parseLocalRegistryRef(ref: string): { base: string; name: string; tag: string } {
  const match =
    /^(?:localhost|127\.0\.0\.1):(\d+)\/([a-z0-9]+(?:[._/-][a-z0-9]+)*):([\w][\w.-]{0,127})$/.exec(ref);
  if (!match) {
    throw new BottleError(
      "REGISTRY_FAILED",
      `${ref} is not an image in a registry on this machine's loopback`,
      {
        hint: "push uncompressed only to claude-bottle's own local registry",
      },
    );
  }
  return { base: `http://127.0.0.1:${match[1]}`, name: match[2]!, tag: match[3]! };
}

/** Push `ref` (`localhost:PORT/name:tag`, already tagged in the engine) with uncompressed layers. */
export async function pushUncompressed(
  engine: ImageEngine,
  ref: string,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  const { base, name, tag } = parseLocalRegistryRef(ref);
  const what = `pushing ${ref}`;
  const save = engine.spawn(["save", ref], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: { stdout: false, stderr: true },
    ...(options.signal && { cancelSignal: options.signal }),
  });
  const blobs = new Map<string, Blob>();
  let dockerManifest: { Config: string; Layers: string[] }[] | undefined;
  try {
    const archive = extract();
    save.stdout!.pipe(archive);
    const uploads = (async () => {
      for await (const entry of archive) {
        const path = entry.header.name.replace(/^\.\//, "");
        if (entry.header.type !== "file") {
          entry.resume();
          continue;
        }
        if (path === "manifest.json") {
          dockerManifest = JSON.parse(await text(entry as AsyncIterable<Buffer>));
        } else if (/(^|\/)(VERSION|json|repositories|index\.json|oci-layout)$/.test(path)) {
          entry.resume();
        } else {
          // tar-stream's entries yield Buffers (typed as unknown).
          blobs.set(path, await uploadBlob(base, name, entry as AsyncIterable<Buffer>, options.signal));
        }
      }
    })();
    await Promise.all([uploads, save]);
  } catch (error) {
    save.kill();
    throw await pushFailure(engine, what, error, save, options.signal);
  }

  const image = dockerManifest?.[0];
  const config = image && blobs.get(image.Config);
  const layers = image?.Layers.map((path) => blobs.get(path));
  if (!image || !config || !layers || layers.some((layer) => layer === undefined)) {
    throw new BottleError("REGISTRY_FAILED", `${what} failed: docker save wrote no usable manifest.json`, {
      hint: "check that the Docker engine can save images (docker save)",
    });
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: ociManifestType,
    config: { mediaType: ociConfigType, ...config },
    layers: layers.map((layer) => ({ mediaType: ociUncompressedLayerType, ...layer })),
  });
  const response = await fetch(`${base}/v2/${name}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": ociManifestType },
    body: manifest,
    ...(options.signal && { signal: options.signal }),
  }).catch(async (error: unknown) => {
    throw await pushFailure(engine, what, error, Promise.resolve(), options.signal);
  });
  if (response.status !== 201) {
    throw new BottleError(
      "REGISTRY_FAILED",
      `${what} failed: the registry answered the manifest with HTTP ${response.status}: ${(await response.text()).slice(0, 200)}`,
    );
  }
}

/**
 * One error for a failed push: ABORTED when cancelled; docker's own failure when `docker save`
 * failed (an engine that went away, say); otherwise what the registry side said.
 */
async function pushFailure(
  engine: ImageEngine,
  what: string,
  error: unknown,
  save: PromiseLike<unknown>,
  signal: AbortSignal | undefined,
): Promise<BottleError> {
  // Wait for `docker save` to end (it was killed), so nothing of the push outlives it.
  const saveError = await Promise.resolve(save).then(
    () => undefined,
    (failure: unknown) => failure,
  );
  if (signal?.aborted) return abortedError(what, { cause: error });
  if (saveError && !(saveError as { isTerminated?: boolean }).isTerminated) {
    const explained = engine.explain(saveError, "REGISTRY_FAILED", what);
    if (explained.code !== "REGISTRY_FAILED") return explained;
  }
  if (BottleError.is(error) && error.code !== "REGISTRY_FAILED") return error;
  const reason = error instanceof Error ? error.message : String(error);
  const detail = (error as { cause?: { code?: string; message?: string } }).cause;
  return new BottleError(
    "REGISTRY_FAILED",
    `${what} failed: ${reason}${detail?.message ? ` (${detail.message})` : ""}`,
    { cause: error },
  );
}

async function text(stream: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/** One blob, streamed: start an upload, PATCH the bytes as they come (hashing them), PUT the digest. */
async function uploadBlob(
  base: string,
  name: string,
  source: AsyncIterable<Buffer>,
  signal: AbortSignal | undefined,
): Promise<Blob> {
  const started = await fetch(`${base}/v2/${name}/blobs/uploads/`, {
    method: "POST",
    ...(signal && { signal }),
  });
  const location = started.headers.get("location");
  if (started.status !== 202 || !location) {
    throw new BottleError("REGISTRY_FAILED", `the registry refused an upload: HTTP ${started.status}`);
  }
  const hash = createHash("sha256");
  let size = 0;
  const patched = await new Promise<IncomingMessage>((resolve, reject) => {
    const request = nodeHttp().request(new URL(location, base), {
      method: "PATCH",
      headers: { "content-type": "application/octet-stream" },
      ...(signal && { signal }),
    });
    request.on("response", resolve);
    request.on("error", reject);
    void (async () => {
      try {
        for await (const chunk of source) {
          hash.update(chunk);
          size += chunk.length;
          if (!request.write(chunk)) await new Promise((drained) => request.once("drain", drained));
        }
        request.end();
      } catch (error) {
        request.destroy(error as Error);
      }
    })();
  });
  patched.resume();
  const next = patched.headers.location;
  if (patched.statusCode !== 202 || !next) {
    throw new BottleError(
      "REGISTRY_FAILED",
      `the registry refused a layer's bytes: HTTP ${patched.statusCode}`,
    );
  }
  const digest = `sha256:${hash.digest("hex")}`;
  const finish = new URL(next, base);
  finish.searchParams.set("digest", digest);
  const done = await fetch(finish, { method: "PUT", ...(signal && { signal }) });
  if (done.status !== 201) {
    throw new BottleError(
      "REGISTRY_FAILED",
      `the registry did not accept blob ${digest}: HTTP ${done.status}`,
    );
  }
  return { digest, size };
}
