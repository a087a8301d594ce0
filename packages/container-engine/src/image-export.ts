/**
 * Turn an image of the engine into a one-layer OCI image in a folder of this machine, for the
 * in-process registry (ephemeral-registry.ts) to serve to smolvm's `pack create`.
 *
 *   docker create IMAGE   (never started: only its root filesystem is wanted)
 *   docker export         → one uncompressed tar layer, written to disk and hashed as it arrives
 *   docker image inspect  → the config (Env, Entrypoint, Cmd, …) with rootfs.diff_ids = [that layer]
 *   + an OCI manifest naming the config and the layer
 *
 * Why not `docker save`: on Docker 20.10 with the classic builder (no BuildKit, so no OCI exporter)
 * `docker save` gathers every layer before it writes its first byte: 5.5 s of the agent image
 * (858 MB) on the 2-core machine before anything can move on. `docker export` streams the flattened
 * filesystem at once (773 MB in 2.4 s there), and hashing it on the way costs nothing extra (Node's
 * sha256 runs at about 1.6 GB/s there). One flattened layer loses the image's layer history, which
 * nothing downstream reads: smolvm unpacks the layers into one root filesystem anyway.
 *
 * Why one uncompressed layer is accepted (read in smolvm at a5df5001, Dec 2026, and
 * go-containerregistry at 3f4ff3ca): smolvm's puller (crates/smolvm-agent/src/storage.rs,
 * `pull_image_with_progress_and_auth`) runs `crane manifest`, takes `config.digest` and every
 * `layers[].digest` without looking at media types, fetches each with `crane blob`, and
 * crates/smolvm-oci-layer/src/lib.rs `decompress_layer_reader` sniffs the first bytes (gzip `1f 8b`,
 * zstd `28 b5 2f fd`, anything else passed through as a plain tar). crane's `blob` copies
 * `layer.Compressed()` out as the registry sent it (cmd/crane/cmd/blob.go) and checks every blob
 * against its digest as it reads (pkg/v1/remote/fetcher.go, `verify.ReadCloser`). The Docker engine
 * also pulls and runs such an image (image-export.integration.test.ts proves it).
 *
 * What a container adds: the export also holds four empty files the engine puts in every container
 * (/.dockerenv, /etc/hostname, /etc/hosts, /etc/resolv.conf). smolvm writes its own
 * /etc/resolv.conf into the overlay at boot, and a default /etc/hosts when the image's has no
 * entries, an empty one included (storage.rs, `setup_upper_layer`), so they change nothing there.
 *
 * The container exists only while it is exported and is removed on every way out; it carries its
 * owner's pid (process-owner.ts), so if this process is killed mid-export the next prepare (or
 * `cache prune`) removes it: see sweepOrphanedContainers. The same goes for the rare container whose
 * `docker create` was itself killed mid-request (a Ctrl-C reaches the whole process group) and that
 * the engine finished creating after the removal here.
 */
import { createHash, randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { abortedError, bottleLabels } from "@claude-bottle/core";
import {
  currentOwner,
  type OwnerProbe,
  ownerIsDead,
  type ProcessOwner,
  systemOwnerProbe,
} from "@claude-bottle/core/process-owner";
import type { ImageEngine } from "./image-engine.js";

export const ociManifestType = "application/vnd.oci.image.manifest.v1+json";
export const ociConfigType = "application/vnd.oci.image.config.v1+json";
export const ociUncompressedLayerType = "application/vnd.oci.image.layer.v1.tar";

/** The label on the containers claude-bottle makes; its value says what for ("export" here). */
export const roleLabel = bottleLabels.role;

/** Labels naming the process that owns such a container, so a later run can tell an orphan. */
export const ownerLabels = {
  pid: "dev.claude-bottle.owner-pid",
  bootId: "dev.claude-bottle.owner-boot-id",
  host: "dev.claude-bottle.owner-host",
} as const;

/**
 * The roles whose containers a killed claude-bottle can leave behind: "export" (this file) and
 * "registry" (the `registry:2` containers of claude-bottle versions before the in-process registry;
 * sweeping them costs the same `ps` call, so those leftovers go too).
 */
const sweptRoles = ["export", "registry"] as const;

/** A blob of an OCI image: its digest (`sha256:…`) and size in bytes. */
export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** A one-layer OCI image on this machine, ready to be served. */
export interface ExportedImage {
  manifest: { descriptor: OciDescriptor; bytes: Buffer };
  config: { descriptor: OciDescriptor; bytes: Buffer };
  /** The layer's tar, named by its digest in the folder it was exported to. */
  layer: { descriptor: OciDescriptor; path: string };
}

export interface ExportImageOptions {
  signal?: AbortSignal;
  /** Who removes the container if this process cannot (default: this process). */
  owner?: ProcessOwner;
}

/**
 * Export `source` (a reference or an image id) into `dir`, a folder private to the caller that it
 * removes when it is done or fails (nothing here cleans it: the caller owns it).
 */
export async function exportImage(
  engine: ImageEngine,
  source: string,
  dir: string,
  options: ExportImageOptions = {},
): Promise<ExportedImage> {
  const { signal } = options;
  const what = `exporting ${source}`;
  const owner = options.owner ?? (await currentOwner());
  const container = `claude-bottle-export-${randomBytes(4).toString("hex")}`;
  try {
    // Side by side: each is a CLI call of 50 to 150 ms on a busy 2-core machine. Both are waited
    // for even when one fails, so that the removal below never comes before the creation; and
    // `create` is not cancelled (a CLI killed mid-request can leave the engine creating the
    // container after the removal): a cancel is noticed once it is done.
    const [inspected, created] = await Promise.allSettled([
      engine.exec(
        ["image", "inspect", "--format", "{{json .}}", source],
        "PREPARE_FAILED",
        `inspecting ${source}`,
        {
          ...(signal && { cancelSignal: signal }),
        },
      ),
      engine.exec(
        [
          "create",
          "--name",
          container,
          "--label",
          `${roleLabel}=export`,
          "--label",
          `${ownerLabels.pid}=${owner.pid}`,
          ...(owner.bootId ? ["--label", `${ownerLabels.bootId}=${owner.bootId}`] : []),
          "--label",
          `${ownerLabels.host}=${owner.host}`,
          // Never started; the command only keeps `create` from refusing an image that has none.
          "--network",
          "none",
          "--entrypoint",
          "/claude-bottle-never-started",
          source,
        ],
        "PREPARE_FAILED",
        `creating a container of ${source} to export`,
      ),
    ]);
    signal?.throwIfAborted();
    if (inspected.status === "rejected") throw inspected.reason;
    if (created.status === "rejected") throw created.reason;
    const image = JSON.parse(inspected.value) as DockerImage;
    const layer = await exportLayer(engine, container, dir, what, signal);
    const config = Buffer.from(JSON.stringify(ociConfig(image, layer.descriptor.digest)));
    const configDescriptor = describe(ociConfigType, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: ociManifestType,
        config: configDescriptor,
        layers: [layer.descriptor],
      }),
    );
    return {
      manifest: { descriptor: describe(ociManifestType, manifest), bytes: manifest },
      config: { descriptor: configDescriptor, bytes: config },
      layer,
    };
  } catch (error) {
    if (signal?.aborted) throw abortedError(what, { cause: error });
    throw error;
  } finally {
    // Also after a cancel: removal must not be cancelled with the work.
    await engine.removeContainer(container).catch(() => {});
  }
}

/**
 * `docker export` into `dir/<digest hex>`, hashed on the way; renamed once whole.
 *
 * The CLI writes the file itself (its stdout is the file) while this process reads what has
 * arrived and hashes it. Piping the tar through this process instead (read from a pipe, hash, write)
 * made the agent image's export take 4.2 to 4.8 s where the CLI alone writes it in 2.5 to 3 s on the
 * 2-core machine: 64 KiB pipe reads and a write per chunk through libuv's thread pool. Reading the
 * growing file back comes from the page cache in 4 MiB reads, and the export with its hash took
 * 2.7 to 3.2 s there.
 */
async function exportLayer(
  engine: ImageEngine,
  container: string,
  dir: string,
  what: string,
  signal: AbortSignal | undefined,
): Promise<{ descriptor: OciDescriptor; path: string }> {
  const partial = join(dir, `layer-${randomBytes(4).toString("hex")}.partial`);
  const hash = createHash("sha256");
  let size = 0;
  const output = await open(partial, "wx", 0o600);
  let exporting: ReturnType<ImageEngine["spawn"]> | undefined;
  try {
    exporting = engine.spawn(["export", container], {
      stdin: "ignore",
      // execa hands a file descriptor number to the child as it is (lib/stdio/native.js); its
      // types name only the standard ones and 3 to 9.
      stdout: output.fd as unknown as 1,
      stderr: "pipe",
      buffer: { stderr: true },
      ...(signal && { cancelSignal: signal }),
    });
    let exited = false;
    const ended = Promise.resolve(exporting).finally(() => {
      exited = true;
    });
    // Awaited below; until then a failure must not count as unhandled.
    ended.catch(() => {});
    const input = await open(partial, "r");
    try {
      const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
      for (;;) {
        // Taken before the read: once the CLI has exited, whatever it wrote is in the file.
        const done = exited;
        const { bytesRead } = await input.read(chunk, 0, chunk.length, size);
        if (bytesRead > 0) {
          hash.update(chunk.subarray(0, bytesRead));
          size += bytesRead;
        } else if (done) {
          break;
        } else {
          await Promise.race([sleep(5), ended.catch(() => {})]);
        }
      }
    } finally {
      await input.close();
    }
    await ended;
  } catch (error) {
    exporting?.kill();
    await Promise.resolve(exporting).catch(() => {});
    await rm(partial, { force: true });
    if (signal?.aborted) throw abortedError(what, { cause: error });
    throw engine.explain(error, "PREPARE_FAILED", what);
  } finally {
    await output.close();
  }
  const hex = hash.digest("hex");
  const path = join(dir, hex);
  await rename(partial, path);
  return { descriptor: { mediaType: ociUncompressedLayerType, digest: `sha256:${hex}`, size }, path };
}

/** What `docker image inspect` says of an image, as far as the OCI config needs it. */
interface DockerImage {
  Id: string;
  Created?: string;
  Author?: string;
  Architecture?: string;
  Variant?: string;
  Os?: string;
  Config?: {
    User?: string;
    ExposedPorts?: Record<string, object> | null;
    Env?: string[] | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Volumes?: Record<string, object> | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    StopSignal?: string;
  };
}

/**
 * The OCI image config (image-spec config.md) of the exported image: the runtime settings of the
 * engine's image, and one layer. Empty settings are left out, as the spec has them optional.
 */
function ociConfig(image: DockerImage, layerDigest: string): object {
  const from = image.Config ?? {};
  const config = Object.fromEntries(
    Object.entries({
      User: from.User,
      ExposedPorts: from.ExposedPorts,
      Env: from.Env,
      Entrypoint: from.Entrypoint,
      Cmd: from.Cmd,
      Volumes: from.Volumes,
      WorkingDir: from.WorkingDir,
      Labels: from.Labels,
      StopSignal: from.StopSignal,
    }).filter(([, value]) => value !== undefined && value !== null && value !== ""),
  );
  return {
    ...(image.Created && { created: image.Created }),
    ...(image.Author && { author: image.Author }),
    architecture: image.Architecture ?? "amd64",
    ...(image.Variant && { variant: image.Variant }),
    os: image.Os ?? "linux",
    config,
    rootfs: { type: "layers", diff_ids: [layerDigest] },
    history: [
      { ...(image.Created && { created: image.Created }), created_by: `docker export of ${image.Id}` },
    ],
  };
}

function describe(mediaType: string, bytes: Buffer): OciDescriptor {
  return {
    mediaType,
    digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    size: bytes.length,
  };
}

/**
 * Remove the containers of earlier prepares whose claude-bottle is certainly gone (see
 * process-owner.ts); returns their names. Those without owner labels, of live owners or of other
 * hosts are left alone.
 */
export async function sweepOrphanedContainers(engine: ImageEngine, probe?: OwnerProbe): Promise<string[]> {
  const found = (
    await Promise.all(sweptRoles.map((role) => engine.listContainers({ [roleLabel]: role })))
  ).flat();
  if (found.length === 0) return [];
  const judge = probe ?? (await systemOwnerProbe());
  const orphans = found.filter((container) => {
    const owner = ownerOf(container.labels);
    return owner !== undefined && ownerIsDead(owner, judge);
  });
  for (const orphan of orphans) await engine.removeContainer(orphan.name);
  return orphans.map((orphan) => orphan.name);
}

function ownerOf(labels: Record<string, string>): ProcessOwner | undefined {
  const pid = Number(labels[ownerLabels.pid]);
  const host = labels[ownerLabels.host];
  if (!Number.isInteger(pid) || pid <= 0 || !host) return undefined;
  const bootId = labels[ownerLabels.bootId];
  return { pid, host, ...(bootId && { bootId }) };
}
