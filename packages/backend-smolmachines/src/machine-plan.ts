/**
 * RunSpec → smolvm machine: which folders to attach, which egress flags, which environment. Pure,
 * so every mapping rule is unit-tested without a VM.
 */
import {
  BottleError,
  defaultAnthropicBaseUrl,
  type NetworkPolicy,
  type RunSpec,
  resolveNetworkAccess,
} from "@claude-bottle/core";
import type { MachineCreateOptions, MachineExecOptions, MachineMount, MachineNetwork } from "./smolvm-cli.js";

/**
 * smolvm gives a machine at most 4 virtio devices for mounts and published ports together ("no
 * more IRQs") and only finds out when the machine starts; claude-bottle refuses earlier.
 */
export const maxMountsAndPorts = 4;

export interface MachinePlan {
  create: MachineCreateOptions;
  exec: MachineExecOptions;
}

/**
 * The egress policy as smolvm flags. `none` → no network; `open` → `--net`; `allowlist` → one
 * `--allow-host` per host and one `--allow-cidr` per IP or block (each implies `--net`), from core's
 * effective allow-list (defaults, presets, `allow`, `--allow`) plus the API's host: in a VM Claude
 * Code talks to the API directly, without the host-side forwarder Docker bottles use.
 *
 * smolvm's `--allow-host H` also admits every subdomain of H, so a `*.example.com` entry becomes
 * `--allow-host example.com`, which admits example.com itself as well: the closest smolvm can say.
 */
export function machineNetwork(policy: NetworkPolicy, apiHost: string): MachineNetwork {
  const access = resolveNetworkAccess(policy, [apiHost]);
  if (access.mode === "none") return { kind: "none" };
  if (access.mode === "open") return { kind: "open" };
  const unique = (values: string[]) => [...new Set(values)];
  return { kind: "allowlist", hosts: unique([...access.hosts, ...access.domains]), cidrs: access.cidrs };
}

/** The API host Claude Code will call: anthropic.baseUrl's, or the public API's. */
export function apiHostOf(spec: RunSpec): string {
  return new URL(spec.anthropicBaseUrl ?? defaultAnthropicBaseUrl).hostname.replace(/^\[(.*)\]$/, "$1");
}

/** The folders a run attaches: the workspace at its own path, the agent's home, then the extra mounts. */
export function machineMounts(spec: RunSpec): MachineMount[] {
  return [
    { source: spec.workspace, target: spec.workspace, readOnly: false },
    { source: spec.home, target: spec.homeTarget, readOnly: false },
    ...spec.mounts.map((mount) => ({ source: mount.source, target: mount.target, readOnly: mount.readOnly })),
  ];
}

/** Map a RunSpec onto `machine create` and `machine exec`; throws before anything boots when smolvm could not. */
export function planMachine(spec: RunSpec, sidecar: string): MachinePlan {
  const mounts = machineMounts(spec);
  if (mounts.length > maxMountsAndPorts) {
    const extra = spec.mounts.length;
    throw new BottleError(
      "INVALID_CONFIG",
      `smolmachines can attach at most ${maxMountsAndPorts} folders to a machine (smolvm's limit for mounts and ports together), and this run needs ${mounts.length}: the workspace, the agent's home and ${extra} more`,
      {
        backend: "smolmachines",
        hint: `remove ${mounts.length - maxMountsAndPorts} of the extra mounts, or run with --backend docker`,
      },
    );
  }
  return {
    create: {
      from: sidecar,
      mounts,
      network: machineNetwork(spec.network, apiHostOf(spec)),
      ...(spec.resources.cpus !== undefined && { cpus: spec.resources.cpus }),
      ...(spec.resources.memoryMiB !== undefined && { memoryMiB: spec.resources.memoryMiB }),
    },
    exec: {
      command: spec.command,
      workdir: spec.workspace,
      env: {
        HOME: spec.homeTarget,
        // smolvm runs workloads as root; Claude Code accepts --dangerously-skip-permissions as root only with this.
        IS_SANDBOX: "1",
        ...(spec.anthropicBaseUrl && { ANTHROPIC_BASE_URL: spec.anthropicBaseUrl }),
        ...spec.env,
      },
      secrets: spec.secrets,
      tty: spec.tty,
      stdin: spec.stdin,
    },
  };
}
