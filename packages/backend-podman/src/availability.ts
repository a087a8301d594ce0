/**
 * Whether rootless Podman can run bottles on this machine, and how it must be driven here. Every
 * check names its fix, because each one is a thing users meet on ordinary machines:
 *
 * - Podman 4.0 or later. Older releases are end of life, and the podman CLI's JSON output
 *   (`info`, `ps`) and volume handling this backend reads are those of 4.x and 5.x.
 * - Not root. Podman run by root is rootful Podman: its containers' root is the host's root, which
 *   is the opposite of what this backend promises.
 * - Subordinate ids for the user (/etc/subuid, /etc/subgid): rootless Podman maps a container's ids
 *   onto them; without them only the user's own id exists in the container and images fail to run.
 * - An OCI runtime that works here. crun, Podman's first choice, refuses cgroup v1 hosts that also
 *   mount the v2 hierarchy ("cgroups in hybrid mode not supported"); runc runs there, so where crun
 *   is Podman's choice on such a host and runc is installed, every podman call names runc instead.
 * - An init for `--init` (catatonit, which Podman mounts as the bottle's process 1 to reap orphans
 *   and pass on signals). Some distributions leave it out; a static tini serves as well.
 * - Rootless networking for the gateway container (slirp4netns, or pasta on Podman 5), which opens
 *   /dev/net/tun as the user: it is mode 0600 on some machines.
 *
 * Podman limits CPU, memory and processes through cgroups, and a rootless user gets only the
 * controllers delegated to it on cgroup v2, none on v1; the backend declares what it can enforce
 * from that (`resources`) and passes no limit Podman would ignore.
 *
 * Everything is read through a `PodmanHost`, so the decisions are unit-tested against any machine.
 */
import { existsSync, readFileSync } from "node:fs";
import { access, constants, readFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { BottleError } from "@claude-bottle/core";
import { ExecaError, execa } from "execa";
import semver from "semver";

/** The oldest Podman this backend runs on (see above). */
export const minimumPodmanVersion = "4.0.0";

/** What the availability checks read from the machine. */
export interface PodmanHost {
  /** The user claude-bottle runs as. */
  user(): { uid: number; gid: number; name: string };
  /** `podman info --format json`, parsed. Throws a BottleError when podman is missing or fails. */
  podmanInfo(): Promise<unknown>;
  /** A text file's content, or undefined when it does not exist or cannot be read. */
  readText(path: string): Promise<string | undefined>;
  /** Whether `path` exists (any kind of file). */
  exists(path: string): Promise<boolean>;
  /** Whether this process may open `path` for reading and writing. */
  canReadWrite(path: string): Promise<boolean>;
  /**
   * The cgroup controllers delegated to the user, which rootless Podman can limit a container
   * with: on cgroup v2 those of the user's systemd service, none on v1. Synchronous, because a
   * backend's capabilities are read before anything is asked of Podman.
   */
  delegatedControllers(): string[];
}

/** How bottles are run on this machine, once Podman has been found usable. */
export interface PodmanSetup {
  /** "Podman 4.3.1", for doctor. */
  version: string;
  /** The OCI runtime every podman call names (`--runtime`), where Podman's own choice cannot run. */
  runtime?: string;
  /** The init `--init` mounts (`--init-path`), where Podman's own (catatonit) is missing. */
  initPath?: string;
  /** The limits Podman can apply for this user here. */
  resources: { cpus: boolean; memory: boolean; pids: boolean };
  /** What the user should know although Podman works (no limits, runc chosen over crun...). */
  notes: string[];
}

export type PodmanAssessment =
  | { available: true; setup: PodmanSetup }
  | { available: false; reason: string; fix: string; version?: string };

/** Where Podman looks for its init by default (containers.conf `init_path`). */
export const podmanInitPath = "/usr/libexec/podman/catatonit";
/** Static inits that can stand in for a missing catatonit: they run alone inside any image. */
export const initCandidates = [
  "/usr/libexec/catatonit/catatonit",
  "/usr/bin/catatonit",
  "/usr/local/libexec/podman/catatonit",
  "/usr/bin/tini-static",
  "/usr/local/bin/tini-static",
];
/** Where runc is installed by distributions (Podman's own search list, abridged). */
export const runcCandidates = [
  "/usr/bin/runc",
  "/usr/sbin/runc",
  "/usr/local/bin/runc",
  "/usr/local/sbin/runc",
];

const tun = "/dev/net/tun";

/** The parts of `podman info --format json` read here (4.x and 5.x share them). */
interface PodmanInfo {
  host?: {
    cgroupVersion?: string;
    ociRuntime?: { name?: string; path?: string };
    security?: { rootless?: boolean };
    slirp4netns?: { executable?: string };
    pasta?: { executable?: string };
  };
  version?: { Version?: string };
}

export async function assessPodman(host: PodmanHost): Promise<PodmanAssessment> {
  const user = host.user();
  if (user.uid === 0) {
    return {
      available: false,
      reason: "the Podman backend runs rootless Podman, as your own user, and claude-bottle runs as root",
      fix: "run claude-bottle as a regular user (not with sudo); as root, use the docker backend",
    };
  }

  let info: PodmanInfo;
  try {
    info = (await host.podmanInfo()) as PodmanInfo;
  } catch (error) {
    const bottle = BottleError.is(error) ? error : undefined;
    return {
      available: false,
      reason: bottle?.message ?? String(error),
      fix: bottle?.hint ?? "install Podman 4.0 or later (Debian/Ubuntu: sudo apt install podman uidmap)",
    };
  }
  const raw = info.version?.Version ?? "";
  const version = `Podman ${raw || "(unknown version)"}`;
  const parsed = semver.coerce(raw);
  if (!parsed || semver.lt(parsed, minimumPodmanVersion)) {
    return {
      available: false,
      version,
      reason: `${version} is too old: claude-bottle needs Podman ${minimumPodmanVersion} or later`,
      fix: "upgrade Podman (https://podman.io/docs/installation)",
    };
  }
  const unavailable = (reason: string, fix: string): PodmanAssessment => ({
    available: false,
    version,
    reason,
    fix,
  });

  for (const file of ["/etc/subuid", "/etc/subgid"]) {
    if (!hasSubordinateIds(await host.readText(file), user)) {
      return unavailable(
        `${file} gives ${user.name} no subordinate ids, which rootless Podman maps a container's users onto`,
        `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user.name} (a range no other user has), then podman system migrate`,
      );
    }
  }

  const notes: string[] = [];
  let runtime: string | undefined;
  const hostInfo = info.host ?? {};
  const cgroupV1 = hostInfo.cgroupVersion === "v1";
  // A v1 host that also mounts the unified hierarchy is "hybrid", which crun refuses outright.
  if (hostInfo.ociRuntime?.name === "crun" && cgroupV1 && (await host.exists("/sys/fs/cgroup/unified"))) {
    const runc = await firstExisting(host, runcCandidates);
    if (!runc) {
      return unavailable(
        "Podman's runtime crun cannot run containers on this machine's cgroups (v1 and v2 mounted together: " +
          '"cgroups in hybrid mode not supported")',
        "install runc (Debian/Ubuntu: sudo apt install runc), which claude-bottle then uses instead, or boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1)",
      );
    }
    runtime = runc;
    notes.push(`runs containers with runc (${runc}): crun does not support this machine's hybrid cgroups`);
  }

  let initPath: string | undefined;
  if (!(await host.exists(podmanInitPath))) {
    const init = await firstExisting(host, initCandidates);
    if (!init) {
      return unavailable(
        `Podman's init for --init (${podmanInitPath}) is missing`,
        "install catatonit (Debian/Ubuntu: sudo apt install catatonit)",
      );
    }
    initPath = init;
  }

  const network = hostInfo.pasta?.executable || hostInfo.slirp4netns?.executable;
  if (!network) {
    return unavailable(
      "rootless Podman has no network program (slirp4netns or pasta) for the bottle's gateway",
      "install slirp4netns (Debian/Ubuntu: sudo apt install slirp4netns)",
    );
  }
  if (!(await host.canReadWrite(tun))) {
    return unavailable(
      `rootless Podman's network (${network.split("/").pop()}) needs ${tun}, which ${user.name} cannot open`,
      `sudo chmod 0666 ${tun} (its usual mode; a udev rule keeps it so after a reboot)`,
    );
  }

  const resources = enforceableLimits(host);
  const missing = Object.entries({ CPU: resources.cpus, memory: resources.memory, process: resources.pids })
    .filter(([, enforced]) => !enforced)
    .map(([name]) => name);
  if (missing.length > 0) {
    notes.push(
      cgroupV1
        ? "cannot limit a bottle's CPU, memory or processes: rootless Podman has no cgroup controllers on cgroup v1 (boot with cgroup v2 to have them)"
        : `cannot limit a bottle's ${missing.join(", ")} use: ${missing.length > 1 ? "those cgroup controllers are" : "that cgroup controller is"} not delegated to ${user.name} (systemd's user@.service Delegate=)`,
    );
  }
  return {
    available: true,
    setup: { version, ...(runtime && { runtime }), ...(initPath && { initPath }), resources, notes },
  };
}

/** The limits rootless Podman applies for this user (see PodmanHost.delegatedControllers). */
export function enforceableLimits(host: Pick<PodmanHost, "delegatedControllers">): PodmanSetup["resources"] {
  const controllers = new Set(host.delegatedControllers());
  return { cpus: controllers.has("cpu"), memory: controllers.has("memory"), pids: controllers.has("pids") };
}

/** Whether an /etc/subuid-style file gives `user` (by name or uid) a range of at least one id. */
export function hasSubordinateIds(text: string | undefined, user: { uid: number; name: string }): boolean {
  for (const line of (text ?? "").split("\n")) {
    const [owner, start, count] = line.trim().split(":");
    if (owner !== user.name && owner !== String(user.uid)) continue;
    if (/^\d+$/.test(start ?? "") && Number(count) > 0) return true;
  }
  return false;
}

async function firstExisting(host: PodmanHost, paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) if (await host.exists(path)) return path;
  return undefined;
}

/** The machine as it is: the podman CLI on PATH (or `podman`), the real files and user. */
export function systemPodmanHost(podman = "podman", env?: NodeJS.ProcessEnv): PodmanHost {
  return {
    user: () => {
      const info = userInfo();
      return { uid: info.uid, gid: info.gid, name: info.username };
    },
    async podmanInfo() {
      try {
        const { stdout } = await execa(podman, ["info", "--format", "json"], { env, stdin: "ignore" });
        return JSON.parse(stdout) as unknown;
      } catch (error) {
        if (error instanceof ExecaError && (error as { code?: string }).code === "ENOENT") {
          throw new BottleError("BACKEND_UNAVAILABLE", `Podman (${podman}) is not installed`, {
            backend: "podman",
            hint: "install Podman 4.0 or later (Debian/Ubuntu: sudo apt install podman uidmap slirp4netns)",
            cause: error,
          });
        }
        const detail =
          error instanceof ExecaError ? String(error.stderr ?? "").trim() : (error as Error).message;
        throw new BottleError(
          "BACKEND_UNAVAILABLE",
          `\`${podman} info\` failed${detail ? `: ${detail.split("\n").slice(-3).join(" ")}` : ""}`,
          { backend: "podman", hint: "run `podman info` to see what Podman needs", cause: error },
        );
      }
    },
    readText: (path) => readFile(path, "utf8").catch(() => undefined),
    exists: (path) =>
      access(path, constants.F_OK).then(
        () => true,
        () => false,
      ),
    canReadWrite: (path) =>
      access(path, constants.R_OK | constants.W_OK).then(
        () => true,
        () => false,
      ),
    delegatedControllers: () => {
      // Only the unified (v2) hierarchy has cgroup.controllers at its root; v1 and hybrid have none.
      if (!existsSync("/sys/fs/cgroup/cgroup.controllers")) return [];
      const { uid } = userInfo();
      const service = `/sys/fs/cgroup/user.slice/user-${uid}.slice/user@${uid}.service/cgroup.controllers`;
      try {
        return readFileSync(service, "utf8").trim().split(/\s+/).filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}
