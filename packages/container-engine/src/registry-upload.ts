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
 * first bytes: gzip (`1f 8b`), zstd (`28 b5 2f fd`), or anything else passed through as a plain
 * tar (crates/smolvm-agent/src/storage.rs, `pull_image_with_progress_and_auth`; smolvm v1.9.x, and
 * unchanged on smolvm's main branch at a5df5001, December 2026). crane checks each blob against its
 * digest as it reads it (go-containerregistry pkg/v1/remote/fetcher.go, `verify.ReadCloser`), and
 * smolvm pulls the layers one after another, each unpacked before the next. So the layers go up as
 * `application/vnd.oci.image.layer.v1.tar`, exactly as `docker save` writes them; zstd would also
 * do, but compressing costs more CPU here than the bytes it saves.
 *
 * `docker save` streams a tar of the image (one `layer.tar` per layer, the config as
 * `<image id>.json` and a `manifest.json` at the end on older engines; an OCI layout under
 * `blobs/sha256/<digest>` on newer ones). Every file in it is uploaded as it streams past, and
 * `manifest.json` says which file is the config and which are the layers, in order.
 *
 * Nothing is hashed here: the digests are already known, and the registry hashes every upload
 * anyway and refuses one whose digest is not what the client claims (DIGEST_INVALID). An OCI
 * layout names each blob by its digest; in the older format the config's digest is the image id
 * in its file name, and a layer's digest, uncompressed, is its diff id: the config's
 * `rootfs.diff_ids`, in the order of `manifest.json`'s layers. So each upload's bytes go up as
 * they stream past and the upload is closed (PUT with its digest) once that digest is known, at
 * the latest when `manifest.json` has arrived. Hashing the agent image (860 MB to 1 GB) in this
 * process as well cost 0.6 to 1 s of CPU on the 2-core machine a miss is measured on.
 */
import type { IncomingMessage } from "node:http";
import { posix } from "node:path";
import { abortedError, BottleError } from "@claude-bottle/core";
import { nodeHttp, nodeStream } from "@claude-bottle/core/node-builtins";
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

/**
 * Push the engine's image `source` (a reference or an image id) to `target`
 * (`localhost:PORT/name:tag`) with uncompressed layers. `target` may be a promise: `docker save`
 * starts at once and its first bytes wait for it, so a registry can start meanwhile.
 */
export async function pushUncompressed(
  engine: ImageEngine,
  source: string,
  target: string | PromiseLike<string>,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  const save = engine.spawn(["save", source], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: { stdout: false, stderr: true },
    ...(options.signal && { cancelSignal: options.signal }),
  });
  // Awaited below; until then a failure must not count as unhandled.
  save.catch(() => {});
  // Taken from the start, so nothing `docker save` writes before the target is known is lost: the
  // pass-through holds it until the archive reads on, and until then the pipe waits.
  const held = save.stdout!.pipe(new (nodeStream().PassThrough)());
  let ref: string;
  let destination: ReturnType<typeof parseLocalRegistryRef>;
  try {
    ref = await target;
    destination = parseLocalRegistryRef(ref);
  } catch (error) {
    // No registry to push to (it failed to start, say): that failure is the one to report.
    save.kill();
    held.destroy();
    await Promise.resolve(save).catch(() => {});
    throw error;
  }
  const { base, name, tag } = destination;
  const what = `pushing ${ref}`;
  // Every uploaded file (or link to one) by its path in the archive; closed ones have their digest.
  const uploads = new Map<string, Upload | { linkTo: string }>();
  const configs = new Map<string, Buffer>();
  let dockerManifest: { Config: string; Layers: string[] }[] | undefined;
  let image: { config: Blob; layers: Blob[] } | undefined;
  try {
    const archive = extract();
    held.pipe(archive);
    const streamed = (async () => {
      for await (const entry of archive) {
        const path = entry.header.name.replace(/^\.\//, "");
        // tar-stream's entries yield Buffers (typed as unknown).
        const bytes = entry as AsyncIterable<Buffer>;
        const { type, linkname } = entry.header;
        if ((type === "symlink" || type === "link") && linkname) {
          // An older engine saves a layer identical to an earlier one as a link to its layer.tar.
          uploads.set(path, {
            linkTo: type === "symlink" ? posix.join(posix.dirname(path), linkname) : linkname,
          });
          entry.resume();
        } else if (type !== "file") {
          entry.resume();
        } else if (path === "manifest.json") {
          dockerManifest = JSON.parse((await collect(bytes)).toString("utf8"));
        } else if (/(^|\/)(VERSION|json|repositories|index\.json|oci-layout)$/.test(path)) {
          entry.resume();
        } else {
          const named = digestInName(path);
          // A legacy config is small and names the layers' digests: keep it.
          const kept = legacyConfigName.test(path) ? await collect(bytes) : undefined;
          if (kept) configs.set(path, kept);
          const upload = await startBlobUpload(base, name, kept ?? bytes, entry.header.size, options.signal);
          uploads.set(path, upload);
          if (named) await finishBlobUpload(base, upload, named, options.signal);
        }
      }
      image = await closeUploads(base, dockerManifest, uploads, configs, options.signal);
    })();
    await Promise.all([streamed, save]);
  } catch (error) {
    save.kill();
    throw await pushFailure(engine, what, error, save, options.signal);
  }
  if (!image) {
    throw new BottleError("REGISTRY_FAILED", `${what} failed: docker save wrote no usable manifest.json`, {
      hint: "check that the Docker engine can save images (docker save)",
    });
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: ociManifestType,
    config: { mediaType: ociConfigType, ...image.config },
    // Uncompressed, as `docker save` writes them; see the top of this file for why smolvm takes them.
    layers: image.layers.map((layer) => ({ mediaType: ociUncompressedLayerType, ...layer })),
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

/** `<image id>.json` at the top of an older engine's `docker save`: the image's config. */
const legacyConfigName = /^([0-9a-f]{64})\.json$/;

/** The digest a file's path in the archive gives: an OCI layout's blob, or a legacy config. */
function digestInName(path: string): string | undefined {
  const hex = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(path)?.[1] ?? legacyConfigName.exec(path)?.[1];
  return hex && `sha256:${hex}`;
}

/**
 * Once the whole archive has streamed: the config and the layers of `manifest.json`, every upload
 * closed with its digest (a legacy layer's is its diff id, from the config).
 */
async function closeUploads(
  base: string,
  dockerManifest: { Config: string; Layers: string[] }[] | undefined,
  uploads: Map<string, Upload | { linkTo: string }>,
  configs: Map<string, Buffer>,
  signal: AbortSignal | undefined,
): Promise<{ config: Blob; layers: Blob[] } | undefined> {
  const upload = (path: string): Upload | undefined => {
    let found = uploads.get(path);
    for (let hops = 0; found && "linkTo" in found && hops < 8; hops++) found = uploads.get(found.linkTo);
    return found && !("linkTo" in found) ? found : undefined;
  };
  const entry = dockerManifest?.[0];
  const config = entry && upload(entry.Config);
  const layers = entry?.Layers.map(upload);
  if (!entry || !config?.digest || !layers || layers.some((layer) => layer === undefined)) return undefined;
  const keptConfig = configs.get(entry.Config);
  const parsed: unknown = keptConfig && JSON.parse(keptConfig.toString("utf8")).rootfs?.diff_ids;
  const diffIds: unknown[] = Array.isArray(parsed) && parsed.length === layers.length ? parsed : [];
  for (const [index, layer] of (layers as Upload[]).entries()) {
    if (layer.digest) continue;
    const diffId = diffIds[index];
    if (typeof diffId !== "string") return undefined;
    await finishBlobUpload(base, layer, diffId, signal);
  }
  return {
    config: { digest: config.digest, size: config.size },
    layers: (layers as Upload[]).map((layer) => ({ digest: layer.digest!, size: layer.size })),
  };
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

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** An upload whose bytes the registry has; `digest` once it is closed. */
interface Upload {
  location: URL;
  size: number;
  digest?: string;
}

/** Start an upload and PATCH `size` bytes into it as they come (one streamed request). */
async function startBlobUpload(
  base: string,
  name: string,
  source: AsyncIterable<Buffer> | Buffer,
  size: number | undefined,
  signal: AbortSignal | undefined,
): Promise<Upload> {
  const started = await fetch(`${base}/v2/${name}/blobs/uploads/`, {
    method: "POST",
    ...(signal && { signal }),
  });
  const location = started.headers.get("location");
  if (started.status !== 202 || !location) {
    throw new BottleError("REGISTRY_FAILED", `the registry refused an upload: HTTP ${started.status}`);
  }
  let sent = 0;
  const patched = await new Promise<IncomingMessage>((resolve, reject) => {
    const request = nodeHttp().request(new URL(location, base), {
      method: "PATCH",
      headers: {
        "content-type": "application/octet-stream",
        // The tar header gives the length, so the body goes unchunked.
        ...(size !== undefined && { "content-length": size }),
      },
      ...(signal && { signal }),
    });
    request.on("response", resolve);
    request.on("error", reject);
    void (async () => {
      try {
        for await (const chunk of Buffer.isBuffer(source) ? [source] : source) {
          sent += chunk.length;
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
  return { location: new URL(next, base), size: sent };
}

/** Close an upload as `digest`; the registry checks the bytes it got against it. */
async function finishBlobUpload(
  base: string,
  upload: Upload,
  digest: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const finish = new URL(upload.location, base);
  finish.searchParams.set("digest", digest);
  const done = await fetch(finish, { method: "PUT", ...(signal && { signal }) });
  if (done.status !== 201) {
    throw new BottleError(
      "REGISTRY_FAILED",
      `the registry did not accept blob ${digest}: HTTP ${done.status}: ${(await done.text()).slice(0, 200)}`,
    );
  }
  upload.digest = digest;
}
