/**
 * What tells one container engine's CLI from another's, in one place. Docker and Podman take nearly
 * the same `run` arguments; every argv builder in this package asks the flavour for the few that
 * differ instead of naming an engine itself. The differences, as checked against Docker 20.10+ and
 * Podman 4.3 (rootless, runc):
 *
 * - the name containers reach the engine's machine by: Docker wants `--add-host
 *   host.docker.internal:host-gateway` (Docker Desktop has it anyway); Podman 4.3 rejects
 *   `host-gateway` ("invalid IP address in add-host") and writes `host.containers.internal` into
 *   every container's /etc/hosts itself;
 * - read-only `--mount`s: Podman 4.3 refuses the bare `readonly` option of a volume mount
 *   ("readonly: invalid mount option"); both take `ro`, Docker's existing argv keeps `readonly`;
 * - the user: rootless Podman maps the invoking user onto the same uid inside with
 *   `--userns=keep-id`, so files written to the workspace are the user's; `--user uid:gid` still
 *   picks who runs (checked: `--userns=keep-id --user 1001:1001` runs as 1001 owning the user's files);
 * - the network containers join when they need one: Docker's default `bridge`; rootless Podman's
 *   default network (no `--network` at all), since its `bridge` needs privileges it may not have;
 * - the OCI runtime override: a global flag of `podman` (`podman --runtime runc run …`, which a
 *   cgroups-v1 machine needs where crun fails) and a `run` flag of `docker`;
 * - how an unreachable engine reads on stderr (see engine-output.ts).
 */

export type EngineName = "docker" | "podman";

export interface EngineFlavor {
  /** The backend and engine name (`docker`, `podman`): the bottles' backend label and error source. */
  readonly name: EngineName;
  /** How messages name the engine ("Docker", "Podman"). */
  readonly displayName: string;
  /** The CLI when none is given. */
  readonly defaultBinary: string;
  /** Where to get it, for the "not installed" hint. */
  readonly installHint: string;
  /** What to do when the CLI is there but the engine does not answer. */
  readonly unreachableHint: string;
  /** The name a container reaches the engine's machine by. */
  readonly hostName: string;
  /** Where on Linux a service of this machine listens for the engine's containers to reach it. */
  readonly hostListenHint: string;
  /** `--add-host` entries the gateway needs for `hostName` to resolve (none where the engine adds it). */
  readonly hostNameArgs: readonly string[];
  /** The `--mount` option that makes a mount read-only. */
  readonly readOnlyMountOption: string;
  /** Extra `run` arguments that say whose files the bottle's writes become. */
  readonly userNamespaceArgs: readonly string[];
  /** `--network …` for a container that needs an ordinary network (the gateway, an `open` bottle). */
  readonly networkArgs: readonly string[];
  /** Where an OCI runtime override goes: before the subcommand, or among `run`'s arguments. */
  readonly runtimeFlag: "global" | "run";
  /**
   * Whether two `run`s that mount a named volume that does not exist yet can race to create it, one
   * of them failing ("volume already exists"): Podman's can, so the volume a bottle and its gateway
   * share is created before either starts. Docker creates it once for both.
   */
  readonly racyVolumeCreation: boolean;
}

export const dockerFlavor: EngineFlavor = {
  name: "docker",
  displayName: "Docker",
  defaultBinary: "docker",
  installHint: "install Docker (https://docs.docker.com/get-docker/) and run again",
  unreachableHint: "start Docker (or point DOCKER_HOST at a running engine) and run again",
  hostName: "host.docker.internal",
  hostListenHint: "on 0.0.0.0 or the docker0 address",
  hostNameArgs: ["--add-host", "host.docker.internal:host-gateway"],
  readOnlyMountOption: "readonly",
  userNamespaceArgs: [],
  networkArgs: ["--network", "bridge"],
  runtimeFlag: "run",
  racyVolumeCreation: false,
};

export const podmanFlavor: EngineFlavor = {
  name: "podman",
  displayName: "Podman",
  defaultBinary: "podman",
  installHint: "install Podman 4.3 or later (on Debian: apt-get install podman uidmap) and run again",
  unreachableHint:
    "check that Podman works for this user (`podman info`); a remote engine needs CONTAINER_HOST or a connection",
  hostName: "host.containers.internal",
  hostListenHint: "on 0.0.0.0",
  hostNameArgs: [],
  readOnlyMountOption: "ro",
  userNamespaceArgs: ["--userns=keep-id"],
  networkArgs: [],
  runtimeFlag: "global",
  racyVolumeCreation: true,
};

export const engineFlavors: Readonly<Record<EngineName, EngineFlavor>> = {
  docker: dockerFlavor,
  podman: podmanFlavor,
};
