/**
 * A throwaway, read-only OCI registry served by this process: node:http on 127.0.0.1, on a port the
 * kernel picks. Runtimes that can only pull by reference (smolvm's `pack create`) read a freshly
 * exported image (image-export.ts) from it; it lives exactly as long as that pull.
 *
 *   await using registry = await startEphemeralRegistry();
 *   const ref = await registry.push("claude-bottle", digest, exported); // localhost:PORT/claude-bottle:<digest>
 *
 * Why in-process rather than a `registry:2` container, as before:
 * - the puller runs where the CLI runs, and so does this server: it no longer depends on the engine
 *   publishing a port on this machine (a remote DOCKER_HOST or a rootless engine in its own network
 *   works too), and no registry image has to be pulled or configured;
 * - nothing to start (a container took 0.25 to 0.5 s) or upload: "push" only opens the exported
 *   layer and records what answers which path; the layer streams from that open file, so its name
 *   can go at once (see `push`);
 * - nothing to sweep after a kill -9: the server dies with its process;
 * - it is read-only: between push and pack nobody else on this machine can replace the image under
 *   the tag (a `registry:2` accepted pushes from any local process), so what smolvm packs, and what
 *   the cache then trusts, is what this process exported.
 *
 * A Range header is ignored: the whole blob comes back with 200, which HTTP allows and pullers
 * handle (crane does not ask for ranges; smolvm's own registry client starts over on a 200).
 *
 * Hand-written rather than a library: the read side of the distribution API (GET/HEAD of /v2/, of a
 * manifest by tag or digest, of a blob) is a few routes, and no maintained npm package serves it
 * from files without also bringing the write side and storage drivers.
 */

import { type FileHandle, open } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { BottleError } from "@claude-bottle/core";
import { nodeHttp } from "@claude-bottle/core/node-builtins";
import type { ExportedImage } from "./image-export.js";

export interface EphemeralRegistry extends AsyncDisposable {
  /** The port on 127.0.0.1 the registry listens on. */
  readonly port: number;
  /**
   * Serve `image` as `name:tag` (and its manifest by digest); resolves with its reference,
   * `localhost:PORT/name:tag`. The layer file is opened here and read through that handle, so the
   * caller may remove it right after: its bytes stay readable until `close`, and nothing of them is
   * left on disk under a name if the process dies first. (Removing an 800 MB file took 0.2 s on the
   * 2-core machine; removing its name while it is open takes nothing, and `close` leaves the
   * freeing to the kernel without waiting for it.)
   */
  push(name: string, tag: string, image: ExportedImage): Promise<string>;
  /** Stop serving, close every connection and every opened layer (idempotent). */
  close(): Promise<void>;
}

/** The reference of image `name:tag` in a registry on this machine's loopback. */
export function localRegistryRef(port: number, name: string, tag: string): string {
  return `localhost:${port}/${name}:${tag}`;
}

type Blob = { mediaType: string; size: number } & ({ bytes: Buffer } | { file: FileHandle });

interface Repository {
  /** Manifests by tag and by digest. */
  manifests: Map<string, { digest: string; mediaType: string; bytes: Buffer }>;
  blobs: Map<string, Blob>;
}

const namePattern = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;

export async function startEphemeralRegistry(
  options: { signal?: AbortSignal } = {},
): Promise<EphemeralRegistry> {
  options.signal?.throwIfAborted();
  const repositories = new Map<string, Repository>();
  const server = nodeHttp().createServer((request, response) => {
    serve(repositories, port, request, response);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw new BottleError(
      "REGISTRY_FAILED",
      `the local registry could not listen on 127.0.0.1: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  });
  const port = (server.address() as { port: number }).port;
  const files: FileHandle[] = [];
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await closeServer(server);
      // Not waited for: the last close of a layer whose name is gone frees its pages, 0.17 s for the
      // agent image on the 2-core machine, and nothing here depends on that being done.
      for (const file of files) file.close().catch(() => {});
    })();
    return closed;
  };
  return {
    port,
    async push(name, tag, image) {
      if (!namePattern.test(name) || !tagPattern.test(tag)) {
        throw new BottleError("REGISTRY_FAILED", `${name}:${tag} is not a valid image name and tag`);
      }
      if (closed) throw new BottleError("REGISTRY_FAILED", "the local registry is closed");
      const file = await open(image.layer.path, "r");
      files.push(file);
      const repository = repositories.get(name) ?? { manifests: new Map(), blobs: new Map() };
      const { manifest, config, layer } = image;
      repository.blobs.set(config.descriptor.digest, { ...config.descriptor, bytes: config.bytes });
      repository.blobs.set(layer.descriptor.digest, { ...layer.descriptor, file });
      const entry = { ...manifest.descriptor, bytes: manifest.bytes };
      repository.manifests.set(tag, entry);
      repository.manifests.set(manifest.descriptor.digest, entry);
      repositories.set(name, repository);
      return localRegistryRef(port, name, tag);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The routes of the distribution spec's pull side; everything else is 404 or 405. */
function serve(
  repositories: Map<string, Repository>,
  port: number,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const method = request.method ?? "GET";
  response.setHeader("docker-distribution-api-version", "registry/2.0");
  // A page in a browser on this machine could reach 127.0.0.1 under a name of its own (DNS
  // rebinding); the pullers this serves name it by loopback, so nothing else is answered.
  const host = request.headers.host ?? "";
  if (host !== `localhost:${port}` && host !== `127.0.0.1:${port}`) {
    error(response, 404, "NAME_UNKNOWN", "unknown host");
    return;
  }
  if (method !== "GET" && method !== "HEAD") {
    response.setHeader("allow", "GET, HEAD");
    error(response, 405, "UNSUPPORTED", "this registry is read-only");
    return;
  }
  const path = (request.url ?? "/").split("?", 1)[0]!;
  if (path === "/v2/" || path === "/v2") {
    send(response, method, 200, { "content-type": "application/json" }, Buffer.from("{}"));
    return;
  }
  const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
  const repository = match ? repositories.get(match[1]!) : undefined;
  if (!match || !repository) {
    error(response, 404, "NAME_UNKNOWN", "repository not known");
    return;
  }
  const [, , kind, reference] = match as unknown as [string, string, string, string];
  if (kind === "manifests") {
    const manifest = repository.manifests.get(reference);
    if (!manifest) {
      error(response, 404, "MANIFEST_UNKNOWN", "manifest unknown");
      return;
    }
    send(
      response,
      method,
      200,
      { "content-type": manifest.mediaType, "docker-content-digest": manifest.digest },
      manifest.bytes,
    );
    return;
  }
  const blob = repository.blobs.get(reference);
  if (!blob) {
    error(response, 404, "BLOB_UNKNOWN", "blob unknown");
    return;
  }
  const headers = {
    "content-type": "application/octet-stream",
    "docker-content-digest": reference,
    "content-length": String(blob.size),
  };
  if ("bytes" in blob) {
    send(response, method, 200, headers, blob.bytes);
    return;
  }
  response.writeHead(200, headers);
  if (method === "HEAD") {
    response.end();
    return;
  }
  // Streamed from disk: the agent image's layer is hundreds of MB. A read error cuts the response
  // short, which the puller sees as a short blob whose digest does not match.
  // From the start each time (positional reads), so pulls side by side do not disturb each other.
  const stream = blob.file.createReadStream({ start: 0, autoClose: false, highWaterMark: 1024 * 1024 });
  stream.on("error", () => response.destroy());
  stream.pipe(response);
}

function send(
  response: ServerResponse,
  method: string,
  status: number,
  headers: Record<string, string>,
  body: Buffer,
): void {
  response.writeHead(status, { ...headers, "content-length": String(body.length) });
  response.end(method === "HEAD" ? undefined : body);
}

/** An error as the distribution spec words them. */
function error(response: ServerResponse, status: number, code: string, message: string): void {
  const body = Buffer.from(JSON.stringify({ errors: [{ code, message }] }));
  response.writeHead(status, { "content-type": "application/json", "content-length": String(body.length) });
  response.end(body);
}

async function closeServer(server: Server): Promise<void> {
  const done = new Promise<void>((resolve) => server.close(() => resolve()));
  // A puller that is still connected (a pack cancelled mid-pull) must not keep the close waiting.
  server.closeAllConnections();
  await done;
}
