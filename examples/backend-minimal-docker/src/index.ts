/**
 * A minimal third-party claude-bottle backend, written only against @claude-bottle/core's contract
 * (backend.ts with BackendCapabilities, run-spec.ts, errors.ts). It runs each bottle with the
 * `docker` CLI, and declares only what plain `docker run` enforces: who the agent runs as and its
 * resource limits. It has no gateway, so it cannot keep the credential outside the bottle nor hold
 * an allow-list; claude-bottle then refuses a run with a credential (unless credentials.passthrough)
 * and any network mode but `open`, before this code is reached.
 */
import { stat } from "node:fs/promises";
import {
  type BackendFactory,
  BottleError,
  type BottleInfo,
  bottleLabels,
  type RunSpec,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { execa } from "execa";
import { z } from "zod";

/** This backend's own config section, `backends.<package name>`; claude-bottle checks it with this. */
export const optionsSchema = z.object({
  /** The docker CLI to run (a path, or a name on PATH). */
  dockerPath: z.string().min(1).default("docker"),
});
export type ExampleOptions = SharedBackendOptions & z.output<typeof optionsSchema>;

/** What prepare() hands to run(): the image, checked to exist. */
export interface PreparedImage {
  imageRef: string;
}

const name = "minimal-docker";
/** A uid no image gives a home or files to, for runs that name no user. */
const nobody = { uid: 65534, gid: 65534 };

const factory = ((options: ExampleOptions) => {
  const docker = (args: string[], env: Record<string, string> = {}) =>
    execa(options.dockerPath, args, { reject: false, env });
  const fail = (code: "RUN_FAILED" | "PREPARE_FAILED", message: string, hint: string, cause?: unknown) =>
    new BottleError(code, message, { backend: name, hint, cause });

  return {
    name,
    capabilities: {
      user: true,
      // Docker applies these through cgroups; the conformance suite checks they are seen inside.
      resources: { cpus: true, memoryMiB: true, pids: true },
      // Not declared: credentials, egress, denialLog, readOnlyPaths, hostPorts, publish.
    },

    async checkAvailability() {
      const found = await docker(["version", "--format", "{{.Server.Version}}"]);
      if (found.exitCode === 0) return { available: true, version: `Docker Engine ${found.stdout.trim()}` };
      const why = String(found.stderr || found.message)
        .trim()
        .split("\n")[0];
      return {
        available: false,
        reason: `\`${options.dockerPath} version\` failed: ${why}`,
        fix: "install Docker and start its engine, or set backends.<this package>.dockerPath",
      };
    },

    // Builds nothing: options.image says how claude-bottle would build the agent image, and this
    // example ignores it. Run it with a finished image (`--image REF`, or `image.use` in config).
    async prepare(imageRef: string): Promise<PreparedImage> {
      const found = await docker(["image", "inspect", "--format", "{{.Id}}", imageRef]);
      if (found.exitCode !== 0) {
        throw fail(
          "PREPARE_FAILED",
          `image ${imageRef} is not in the engine`,
          `pull or build it first (docker pull ${imageRef}); this backend builds nothing`,
        );
      }
      return { imageRef };
    },

    async run(prepared: PreparedImage, spec: RunSpec, { signal }: { signal?: AbortSignal } = {}) {
      if (signal?.aborted) throw new BottleError("ABORTED", "the run was cancelled", { backend: name });
      // Refuse what this backend cannot do safely even when called without claude-bottle's checks.
      if (Object.keys(spec.secrets).length > 0 && !spec.passthroughCredentials) {
        throw new BottleError(
          "INVALID_CONFIG",
          "this backend cannot keep the credential outside the bottle",
          {
            backend: name,
            hint: "set credentials.passthrough: true to hand it in anyway",
          },
        );
      }
      if (spec.network.mode === "allowlist") {
        throw new BottleError("INVALID_CONFIG", "this backend cannot hold a network allow-list", {
          backend: name,
          hint: "run with network.mode open (or none)",
        });
      }
      // Docker would create a missing bind-mount source as root; refuse it instead.
      if (!(await stat(spec.workspace).catch(() => undefined))?.isDirectory()) {
        throw new BottleError("USAGE", `the workspace ${spec.workspace} is not a folder`, {
          backend: name,
          hint: "create it, or run claude-bottle in an existing project folder",
        });
      }

      // Secrets go in as `--env NAME` (see createArgs): their values only in the docker CLI's
      // environment, never on a command line that `ps` shows.
      const created = await docker(
        ["create", ...createArgs(spec), prepared.imageRef, ...spec.command],
        spec.secrets,
      );
      if (created.exitCode !== 0) {
        throw fail(
          "RUN_FAILED",
          `docker create failed: ${created.stderr.trim()}`,
          "see the message above",
          created,
        );
      }
      const id = created.stdout.trim();
      const remove = () => docker(["rm", "--force", id]);
      if (signal?.aborted) {
        await remove();
        throw new BottleError("ABORTED", "the run was cancelled", { backend: name });
      }
      // `start --attach` forwards the terminal and resolves with the agent's exit code; on abort the
      // container is removed, which ends it.
      const onAbort = () => void remove();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const started = await execa(
          options.dockerPath,
          ["start", "--attach", ...(spec.stdin ? ["--interactive"] : []), id],
          { reject: false, stdio: "inherit" },
        );
        if (signal?.aborted) throw new BottleError("ABORTED", "the run was cancelled", { backend: name });
        return { exitCode: started.exitCode ?? 1 };
      } finally {
        signal?.removeEventListener("abort", onAbort);
        await remove(); // --rm already removes it; this covers a start that failed.
      }
    },

    // Optional: `claude-bottle ps` and `stop` find this backend's bottles by core's labels.
    async listBottles(): Promise<BottleInfo[]> {
      const ids = await docker(["ps", "--quiet", "--filter", `label=${bottleLabels.backend}=${name}`]);
      if (ids.exitCode !== 0) throw fail("RUN_FAILED", "docker ps failed", ids.stderr.trim(), ids);
      if (ids.stdout.trim() === "") return [];
      const format = `{{.Name}}\t{{index .Config.Labels "${bottleLabels.workspace}"}}\t{{.State.StartedAt}}\t{{.State.Status}}`;
      // A bottle that ended between the two calls is left out (inspect then exits 1): as it should be.
      const found = await docker(["inspect", "--format", format, ...ids.stdout.trim().split("\n")]);
      return found.stdout
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [bottle = "", workspace = "", startedAt = "", status = ""] = line.split("\t");
          return { name: bottle.replace(/^\//, ""), backend: name, workspace, startedAt, status };
        });
    },

    async stopBottle(bottle: string) {
      const removed = await docker(["rm", "--force", bottle]);
      if (removed.exitCode !== 0) {
        throw fail("RUN_FAILED", `could not stop ${bottle}`, "see `claude-bottle ps` for names", removed);
      }
    },
  };
}) satisfies BackendFactory<ExampleOptions, PreparedImage>;

export default factory;

/** `docker create` arguments for one run: the RunSpec mapped onto plain Docker flags. */
function createArgs(spec: RunSpec): string[] {
  const user = spec.user ?? nobody;
  const args = ["--rm", "--name", spec.name, "--init", "--cap-drop", "ALL"];
  args.push("--security-opt", "no-new-privileges", "--user", `${user.uid}:${user.gid}`);
  if (spec.tty) args.push("--tty");
  if (spec.stdin) args.push("--interactive");
  if (spec.network.mode === "none") args.push("--network", "none");
  const { cpus, memoryMiB, pids } = spec.resources;
  if (cpus !== undefined) args.push("--cpus", String(cpus));
  if (memoryMiB !== undefined) args.push("--memory", `${memoryMiB}m`);
  if (pids !== undefined) args.push("--pids-limit", String(pids));
  // --volume splits on ":", so this example takes no paths with one; backend-docker uses --mount.
  args.push("--volume", `${spec.workspace}:${spec.workspace}`, "--workdir", spec.workspace);
  args.push("--volume", `${spec.home}:${spec.homeTarget}`);
  for (const m of spec.mounts) args.push("--volume", `${m.source}:${m.target}${m.readOnly ? ":ro" : ""}`);
  const env: Record<string, string> = { HOME: spec.homeTarget, IS_SANDBOX: "1", ...spec.env };
  // With passthrough the agent talks to the API itself; a loopback URL would not reach the host.
  if (spec.anthropicBaseUrl) env.ANTHROPIC_BASE_URL = spec.anthropicBaseUrl;
  for (const [key, value] of Object.entries(env)) args.push("--env", `${key}=${value}`);
  for (const key of Object.keys(spec.secrets)) args.push("--env", key);
  // Core's labels, so `claude-bottle ps` and `stop` (through listBottles) find the bottle.
  const labels: Record<string, string> = { ...spec.labels, [bottleLabels.role]: "bottle" };
  Object.assign(labels, { [bottleLabels.backend]: name, [bottleLabels.workspace]: spec.workspace });
  for (const [key, value] of Object.entries(labels)) args.push("--label", `${key}=${value}`);
  return args;
}
