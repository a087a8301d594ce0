/**
 * The image engine: a container engine's CLI (Docker's or Podman's, see engine-flavor.ts), driven
 * through execa. Every backend builds, tags, pushes and runs images through this one module; none
 * talks to `docker` or `podman` on its own.
 */

import { mkdtempSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { BottleError, commandError, type ErrorCode } from "@claude-bottle/core";
import { ExecaError, type Options as ExecaOptions, execa, type ResultPromise } from "execa";
import type { EngineLimits } from "./bottle-run-args.js";
import { dockerFlavor, type EngineFlavor } from "./engine-flavor.js";
import { engineFailure } from "./engine-output.js";

export interface ImageEngineOptions {
  /** Which engine's CLI this is (default Docker's). */
  flavor?: EngineFlavor;
  /** The CLI to call (default the flavour's, `docker` or `podman`, on PATH). */
  binary?: string;
  /** Environment for the CLI (DOCKER_HOST, CONTAINER_HOST...); defaults to this process's. */
  env?: NodeJS.ProcessEnv;
  /**
   * The OCI runtime containers run with (`runc`, `crun`), where the engine's default does not work
   * on this machine; unset leaves the engine's own choice.
   */
  runtime?: string;
  /** The init `run --init` mounts, where the engine's own is missing (`--init-path`). */
  initPath?: string;
  /** Which resource limits the engine applies for this user (default: all). */
  limits?: EngineLimits;
}

export interface BuildOptions {
  /** The tag to give the built image. */
  tag: string;
  /** The build context folder. */
  context: string;
  /** The Dockerfile (default: `Dockerfile` in the context). */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  /** Receives build output line by line, for progress display. */
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
}

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  status: string;
  createdAt: string;
  labels: Record<string, string>;
}

export class ImageEngine {
  readonly flavor: EngineFlavor;
  readonly binary: string;
  readonly env: NodeJS.ProcessEnv | undefined;
  /** Arguments that go before every subcommand (a Podman runtime override). */
  private readonly globalArgs: readonly string[];
  /** Arguments every `run` gets right after `run` (a Docker runtime override). */
  readonly runOptions: readonly string[];
  readonly initPath: string | undefined;
  readonly limits: EngineLimits | undefined;

  constructor(options: ImageEngineOptions = {}) {
    this.flavor = options.flavor ?? dockerFlavor;
    this.binary = options.binary ?? this.flavor.defaultBinary;
    this.env = options.env;
    const runtime = options.runtime ? ["--runtime", options.runtime] : [];
    this.globalArgs = this.flavor.runtimeFlag === "global" ? runtime : [];
    this.runOptions = this.flavor.runtimeFlag === "run" ? runtime : [];
    this.initPath = options.initPath;
    this.limits = options.limits;
  }

  /** Run the CLI with `args`. Failures become BottleErrors with `code`; execa's error is the cause. */
  async exec(args: string[], code: ErrorCode, what: string, options: ExecaOptions = {}): Promise<string> {
    try {
      const result = await this.call(args, { ...options, stdin: "ignore" });
      return typeof result.stdout === "string" ? result.stdout.trim() : "";
    } catch (error) {
      throw this.explain(error, code, what);
    }
  }

  /** Start `<cli> <args>` with caller-chosen stdio, e.g. an interactive `docker run`. */
  spawn(args: string[], options: ExecaOptions = {}): ResultPromise {
    return this.call(args, options);
  }

  /** The full command line for `args`, as it runs (for `--dry-run` and debug output). */
  commandLine(args: readonly string[]): string[] {
    return [this.binary, ...this.globalArgs, ...args];
  }

  private call(args: readonly string[], options: ExecaOptions): ResultPromise {
    return execa(this.binary, [...this.globalArgs, ...args], { env: this.env, ...options });
  }

  /** Turn a failed CLI call into a BottleError that says what happened and what to do. */
  explain(error: unknown, code: ErrorCode, what: string, output?: string): BottleError {
    const name = this.flavor.displayName;
    return commandError(error, {
      code,
      what,
      missing: {
        code: "ENGINE_UNREACHABLE",
        message: `the ${name} CLI (${this.binary}) is not installed`,
        hint: this.flavor.installHint,
      },
      recognise: (stderr) =>
        engineFailure(stderr) === "unreachable"
          ? new BottleError("ENGINE_UNREACHABLE", `the ${name} engine does not answer`, {
              hint: this.flavor.unreachableHint,
            })
          : undefined,
      ...(output !== undefined && { output }),
    });
  }

  /** The engine's version; throws ENGINE_UNREACHABLE when no engine answers. */
  async serverVersion(): Promise<string> {
    return this.exec(
      ["version", "--format", "{{.Server.Version}}"],
      "ENGINE_UNREACHABLE",
      `asking the ${this.flavor.displayName} engine for its version`,
    );
  }

  /**
   * Build an image; resolves with its id (`sha256:…`). The id comes from the file `--iidfile` writes
   * (under BuildKit and the legacy builder alike), which saves an `image inspect` after every build.
   */
  async build(options: BuildOptions): Promise<string> {
    // Synchronous, so that the build starts in the turn of the event loop it is asked in (see
    // buildAgentImage).
    const scratch = mkdtempSync(join(tmpdir(), "claude-bottle-iid-"));
    const idFile = join(scratch, "image-id");
    const args = ["build", "--tag", options.tag, "--iidfile", idFile];
    if (options.dockerfile) args.push("--file", options.dockerfile);
    for (const [key, value] of Object.entries(options.buildArgs ?? {}))
      args.push("--build-arg", `${key}=${value}`);
    for (const [key, value] of Object.entries(options.labels ?? {})) args.push("--label", `${key}=${value}`);
    args.push(options.context);
    try {
      await this.streamed(args, "PREPARE_FAILED", `building image ${options.tag}`, options);
      const id = (await readFile(idFile, "utf8").catch(() => "")).trim();
      // An engine that wrote no id file still built the image: ask for its id instead.
      return /^sha256:[0-9a-f]{64}$/.test(id) ? id : await this.imageId(options.tag);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * Run `<cli> <args>` with its output (stdout and stderr as one) handed line by line to
   * `onOutput`; on failure the last lines of it explain the error.
   */
  private async streamed(
    args: string[],
    code: ErrorCode,
    what: string,
    options: { onOutput?: (line: string) => void; signal?: AbortSignal | undefined },
  ): Promise<void> {
    const tail: string[] = [];
    try {
      const command = this.call(args, {
        stdin: "ignore",
        all: true,
        buffer: false,
        cancelSignal: options.signal,
      });
      createInterface({ input: command.all! }).on("line", (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        options.onOutput?.(line);
      });
      await command;
    } catch (error) {
      throw this.explain(error, code, what, tail.join("\n"));
    }
  }

  /** The image's id (`sha256:…`). */
  async imageId(ref: string): Promise<string> {
    return this.exec(
      ["image", "inspect", "--format", "{{.Id}}", ref],
      "PREPARE_FAILED",
      `looking up image ${ref}`,
    );
  }

  /**
   * The ids of `refs`, in their order, from one `image inspect`, as the engine prints them (Podman
   * leaves out `sha256:`); undefined when any of them is missing or the engine did not answer.
   */
  async imageIds(refs: readonly string[]): Promise<string[] | undefined> {
    const output = await this.exec(
      ["image", "inspect", "--format", "{{.Id}}", ...refs],
      "PREPARE_FAILED",
      "looking up images",
    ).catch(() => undefined);
    const ids = output?.split("\n").map((line) => line.trim());
    return ids?.length === refs.length && ids.every((id) => /^(sha256:)?[0-9a-f]{64}$/.test(id))
      ? ids
      : undefined;
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.imageId(ref);
      return true;
    } catch (error) {
      if (BottleError.is(error) && error.code === "ENGINE_UNREACHABLE") throw error;
      return false;
    }
  }

  async tag(source: string, target: string): Promise<void> {
    await this.exec(["tag", source, target], "PREPARE_FAILED", `tagging ${source} as ${target}`);
  }

  /** Push `ref`; `onOutput` receives the push's status lines (one per layer change) as they come. */
  async push(
    ref: string,
    options: { signal?: AbortSignal; onOutput?: (line: string) => void } = {},
  ): Promise<void> {
    await this.streamed(["push", ref], "REGISTRY_FAILED", `pushing ${ref}`, options);
  }

  async removeImage(ref: string): Promise<void> {
    await this.exec(["image", "rm", ref], "RUN_FAILED", `removing image ${ref}`);
  }

  /** `inspect` of a container, image or network, parsed. */
  async inspect(ref: string): Promise<Record<string, unknown>> {
    const out = await this.exec(["inspect", ref], "RUN_FAILED", `inspecting ${ref}`);
    const [first] = JSON.parse(out) as Record<string, unknown>[];
    if (!first) throw new BottleError("RUN_FAILED", `${this.binary} inspect returned nothing for ${ref}`);
    return first;
  }

  /** Remove a container, stopping it first; a container that is already gone is not an error. */
  async removeContainer(nameOrId: string): Promise<void> {
    try {
      await this.spawn(["rm", "--force", "--volumes", nameOrId], { stdin: "ignore" });
    } catch (error) {
      // Gone, or on its way out (an `--rm` container the engine is removing already).
      const failure = engineFailure(stderrOf(error));
      if (failure === "no-such-container" || failure === "removal-in-progress") return;
      throw this.explain(error, "RUN_FAILED", `removing container ${nameOrId}`);
    }
  }

  /**
   * Remove a volume; one that is gone is not an error. A container that was just removed may still
   * hold it for a moment, so "in use" is retried for a few seconds.
   */
  async removeVolume(volume: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawn(["volume", "rm", volume], { stdin: "ignore" });
        return;
      } catch (error) {
        const failure = engineFailure(stderrOf(error));
        if (failure === "no-such-volume") return;
        if (failure === "volume-in-use" && attempt < 40) {
          await sleep(250);
          continue;
        }
        const explained = this.explain(error, "RUN_FAILED", `removing the volume ${volume}`);
        if (explained.code === "ENGINE_UNREACHABLE") throw explained;
        throw new BottleError("RUN_FAILED", explained.message, {
          hint: `remove it with \`${this.commandLine(["volume", "rm", volume]).join(" ")}\``,
          cause: error,
        });
      }
    }
  }

  /**
   * Create a named volume, unless it exists already (Docker's `volume create` succeeds then;
   * Podman's says "already exists", and before 4.4 it has no `--ignore`).
   */
  async createVolume(volume: string): Promise<void> {
    const args = ["volume", "create", volume];
    const result = await this.spawn(args, { stdin: "ignore", reject: false });
    if (result.exitCode === 0 || engineFailure(String(result.stderr ?? "")) === "volume-exists") return;
    throw this.explain(result, "RUN_FAILED", `creating the volume ${volume}`);
  }

  /** The names of all containers, running or not, whoever made them. */
  async containerNames(): Promise<string[]> {
    const out = await this.exec(
      ["container", "ls", "--all", "--format", "{{.Names}}"],
      "RUN_FAILED",
      "listing containers",
    );
    return out.split("\n").filter(Boolean);
  }

  /** The names of all volumes, whoever made them. */
  async volumeNames(): Promise<string[]> {
    const out = await this.exec(["volume", "ls", "--format", "{{.Name}}"], "RUN_FAILED", "listing volumes");
    return out.split("\n").filter(Boolean);
  }

  /** Containers (running or not) that carry every label in `labels`. */
  async listContainers(labels: Record<string, string | true>): Promise<ContainerSummary[]> {
    // A template both engines fill alike (Podman's `{{json .}}` is an array with other field names).
    const args = [
      "ps",
      "--all",
      "--no-trunc",
      "--format",
      psFields.map((field) => `{{.${field}}}`).join("\t"),
    ];
    for (const [key, value] of Object.entries(labels))
      args.push("--filter", `label=${value === true ? key : `${key}=${value}`}`);
    const out = await this.exec(args, "RUN_FAILED", "listing containers");
    const rows = out
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const values = line.split("\t");
        return Object.fromEntries(psFields.map((field, i) => [field, values[i] ?? ""])) as Record<
          (typeof psFields)[number],
          string
        >;
      });
    if (rows.length === 0) return [];
    // `ps` joins labels with commas, which label values (paths) may contain; inspect keeps them apart.
    const labelsById = new Map<string, Record<string, string>>();
    const inspect = (ids: string[]) =>
      this.exec(
        ["inspect", "--format", "{{.Id}} {{json .Config.Labels}}", ...ids],
        "RUN_FAILED",
        "reading container labels",
      );
    const ids = rows.map((row) => row.ID ?? "");
    // One call for all; if a container went away in between (which fails the whole call), one each.
    const inspected = await inspect(ids).catch(async () =>
      (await Promise.all(ids.map((id) => inspect([id]).catch(() => "")))).join("\n"),
    );
    for (const line of inspected.split("\n").filter(Boolean)) {
      const space = line.indexOf(" ");
      labelsById.set(line.slice(0, space), JSON.parse(line.slice(space + 1)) ?? {});
    }
    return rows.map((row) => ({
      id: row.ID ?? "",
      name: row.Names ?? "",
      image: row.Image ?? "",
      status: row.Status ?? "",
      createdAt: row.CreatedAt ?? "",
      labels: labelsById.get(row.ID ?? "") ?? {},
    }));
  }
}

/** The columns `listContainers` reads from `ps`, in order. */
const psFields = ["ID", "Names", "Image", "Status", "CreatedAt"] as const;

function stderrOf(error: unknown): string {
  return error instanceof ExecaError ? String(error.stderr ?? "") : "";
}
