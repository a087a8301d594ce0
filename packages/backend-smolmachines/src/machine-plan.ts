/**
 * RunSpec → smolvm machine: which folders to attach, which egress flags, which environment, which
 * credential bindings, and who the agent runs as. Pure, so every mapping rule is unit-tested
 * without a VM.
 */
import { isIP } from "node:net";
import {
  BottleError,
  credentialNames,
  defaultAnthropicBaseUrl,
  isLoopbackHost,
  type NetworkPolicy,
  type RunSpec,
  resolveNetworkAccess,
} from "@claude-bottle/core";
import semver from "semver";
import type {
  MachineCreateOptions,
  MachineCredential,
  MachineExecOptions,
  MachineMount,
  MachineNetwork,
} from "./smolvm-cli.js";

/**
 * smolvm gives a machine at most 4 virtio devices for mounts and published ports together ("no
 * more IRQs") and only finds out when the machine starts; claude-bottle refuses earlier.
 */
export const maxMountsAndPorts = 4;

/**
 * The first smolvm that keeps a credential out of a machine claude-bottle boots. `--credential
 * NAME=ENV@HOST` arrived in v1.18.2, but v1.18.2's `machine create --from X.smolmachine` (the
 * only way claude-bottle creates machines) accepts the flag and silently drops the binding: the
 * guest gets neither placeholder nor CA (smolvm docs/credentials/references/traps.md, "--credential
 * on a machine created from a pack is dropped on v1.18.2"; fixed upstream in #1400). v1.22.2 is
 * the first release measured binding a machine created from a pack.
 */
export const credentialBindingVersion = "1.22.2";

/**
 * The address of the host as a guest sees it on smolvm's virtio-net link: the gateway. smolvm
 * relays a guest's TCP flow to the gateway address to the host's loopback, same port
 * (crates/smolvm-network/src/tcp_relay.rs, `host_connect_addr`; the gateway also answers the name
 * `host.smolvm.internal`, dns.rs). It exists only on virtio-net, which smolvm picks whenever an
 * egress policy (`--allow-host`/`--allow-cidr`) is given (src/network/launch.rs).
 */
export const hostGateway = { v4: "100.96.0.1", v6: "fd53:4d00::1" } as const;

/** The agent's identity when the spec names none (root on the host, root's workspace): the bundled image's `claude`. */
export const fallbackAgentUser = { uid: 10001, gid: 10001 } as const;

/**
 * Where a credential-bound machine's guest finds the CA bundle smolvm assembles at boot: the
 * image's own trust roots (so tls.extraCaCerts, built into the image, still count) followed by the
 * machine's CA, which signs what smolvm's interceptor presents for the bound host (smolvm
 * docs/credential-substitution.md, "What the guest sees"). smolvm points its own variables there
 * too, but the bundled image sets NODE_EXTRA_CA_CERTS and SSL_CERT_FILE itself; the exec's `-e`
 * settles which one Claude Code sees.
 */
export const smolvmCaBundle = "/run/smolvm/ca-bundle.pem";

export interface MachinePlan {
  create: MachineCreateOptions;
  exec: MachineExecOptions;
  /**
   * Values smolvm itself must see in its environment for `create`, `start` and `exec` (the
   * credential bindings resolve them on the host). Never passed to the guest.
   */
  hostEnv: Record<string, string>;
  /** What the user should be told about this run. */
  warnings: string[];
}

export interface PlanContext {
  /** smolvm's version (`smolvm --version`), e.g. "1.22.2". */
  smolvmVersion: string;
}

/** True when smolvm `version` keeps the API credential outside the VM (see credentialBindingVersion). */
export function keepsCredentialOutside(version: string): boolean {
  const parsed = semver.coerce(version);
  return parsed !== null && semver.gte(parsed, credentialBindingVersion);
}

/**
 * The egress policy as smolvm flags. `open` → `--net`; `allowlist` → one `--allow-host` per host
 * and one `--allow-cidr` per IP or block (each implies `--net`), from core's effective allow-list
 * (defaults, presets, `allow`, `--allow`) plus the API's host: in a VM Claude Code talks to the API
 * itself. `none` → the API's host and nothing else, as on Docker, where `none` leaves the bottle
 * only the API forwarder.
 *
 * smolvm's `--allow-host H` also admits every subdomain of H, so a `*.example.com` entry becomes
 * `--allow-host example.com`, which admits example.com itself as well: the closest smolvm can say.
 */
export function machineNetwork(policy: NetworkPolicy, apiHost: string): MachineNetwork {
  const access =
    policy.mode === "none"
      ? resolveNetworkAccess({ mode: "allowlist", allow: [] }, [apiHost])
      : resolveNetworkAccess(policy, [apiHost]);
  if (access.mode === "open") return { kind: "open" };
  if (access.mode === "none") return { kind: "none" };
  const unique = (values: string[]) => [...new Set(values)];
  return { kind: "allowlist", hosts: unique([...access.hosts, ...access.domains]), cidrs: access.cidrs };
}

/** The API Claude Code will call: anthropic.baseUrl, or the public API. */
export function apiUrlOf(spec: RunSpec): URL {
  return new URL(spec.anthropicBaseUrl ?? defaultAnthropicBaseUrl);
}

/** The API host Claude Code will call: anthropic.baseUrl's, or the public API's. */
export function apiHostOf(spec: RunSpec): string {
  return apiUrlOf(spec).hostname.replace(/^\[(.*)\]$/, "$1");
}

/**
 * The API as the guest must address it. A loopback `anthropic.baseUrl` (a gateway on this
 * machine) becomes smolvm's host gateway, which relays to the host's loopback; anything else is
 * used as it is.
 */
export function guestApiUrl(spec: RunSpec): { url: string | undefined; gateway?: string } {
  if (!spec.anthropicBaseUrl) return { url: undefined };
  const url = apiUrlOf(spec);
  const host = apiHostOf(spec);
  if (!isLoopbackHost(host)) return { url: spec.anthropicBaseUrl };
  const gateway = host === "::1" ? hostGateway.v6 : hostGateway.v4;
  url.hostname = isIP(gateway) === 6 ? `[${gateway}]` : gateway;
  // `new URL` adds a trailing slash to a bare origin; keep the user's spelling otherwise.
  const text = spec.anthropicBaseUrl.endsWith("/") ? url.href : url.href.replace(/\/$/, "");
  return { url: text, gateway };
}

/** The folders a run attaches: the workspace at its own path, the agent's home, then the extra mounts. */
export function machineMounts(spec: RunSpec): MachineMount[] {
  return [
    { source: spec.workspace, target: spec.workspace, readOnly: false },
    { source: spec.home, target: spec.homeTarget, readOnly: false },
    ...spec.mounts.map((mount) => ({ source: mount.source, target: mount.target, readOnly: mount.readOnly })),
  ];
}

type CredentialName = (typeof credentialNames)[number];

/**
 * The one credential Claude Code should use, in the order Docker's forwarder picks it: an API key,
 * else a bearer token. smolvm refuses a request that carries two placeholders, so the guest gets
 * exactly one.
 */
function chosenCredential(secrets: Record<string, string>): CredentialName | undefined {
  return credentialNames.find((name) => secrets[name]);
}

/** Why `url` cannot carry a smolvm credential binding, or undefined when it can. */
function unbindable(url: URL, host: string): string | undefined {
  if (isLoopbackHost(host)) {
    return `it is on this machine's loopback, which the VM reaches only through smolvm's gateway address`;
  }
  if (url.protocol !== "https:") return "smolvm substitutes credentials only into HTTPS requests";
  if (url.port !== "" && url.port !== "443") return "smolvm intercepts HTTPS on port 443 only";
  if (isIP(host) !== 0) return "smolvm binds a credential to a DNS name, not an IP address";
  return undefined;
}

/**
 * How the credential reaches the API. By default it is bound with `--credential` to the API's
 * host: the guest holds a placeholder and smolvm, on the host, puts the real value into the HTTPS
 * request headers to that host only. With `credentials.passthrough` the value goes into the guest
 * (`-e NAME`, the value only in smolvm's environment). Anything else is refused before a VM boots.
 */
function planCredentials(
  spec: RunSpec,
  context: PlanContext,
): { bindings: MachineCredential[]; guestSecrets: Record<string, string>; hostEnv: Record<string, string> } {
  const others = Object.fromEntries(
    Object.entries(spec.secrets).filter(([name]) => !(credentialNames as readonly string[]).includes(name)),
  );
  const chosen = chosenCredential(spec.secrets);
  if (!chosen) return { bindings: [], guestSecrets: others, hostEnv: {} };
  if (spec.passthroughCredentials) {
    return { bindings: [], guestSecrets: { ...spec.secrets }, hostEnv: {} };
  }
  const url = apiUrlOf(spec);
  const host = apiHostOf(spec);
  const passthroughHint =
    "or set credentials.passthrough: true to pass it into the VM anyway (warned), or run with --backend docker";
  if (!keepsCredentialOutside(context.smolvmVersion)) {
    throw new BottleError(
      "BACKEND_UNAVAILABLE",
      `smolvm ${context.smolvmVersion} cannot keep ${chosen} out of the VM (credential bindings on machines created from a pack need smolvm ${credentialBindingVersion} or later)`,
      {
        backend: "smolmachines",
        hint: `upgrade smolvm to ${credentialBindingVersion} or later, ${passthroughHint}`,
      },
    );
  }
  const why = unbindable(url, host);
  if (why) {
    throw new BottleError(
      "INVALID_CONFIG",
      `anthropic.baseUrl ${spec.anthropicBaseUrl} cannot receive ${chosen} from outside the VM: ${why}`,
      {
        backend: "smolmachines",
        hint: `point anthropic.baseUrl at an https:// host name on port 443, ${passthroughHint}`,
      },
    );
  }
  return {
    bindings: [{ name: chosen.toLowerCase().replaceAll("_", "-"), envVar: chosen, hosts: [host] }],
    guestSecrets: others,
    hostEnv: { [chosen]: spec.secrets[chosen]! },
  };
}

/**
 * The argv that drops root before the agent starts. smolvm runs guest commands as root and has no
 * user flag, so the command itself changes identity: util-linux `setpriv` (in the bundled image)
 * sets the real and effective UID and GID, drops supplementary groups, and sets no_new_privs so
 * nothing the agent runs (a setuid `su`, say) can become root again.
 */
export function dropPrivileges(user: { uid: number; gid: number }, command: string[]): string[] {
  return [
    "setpriv",
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--clear-groups",
    "--no-new-privs",
    "--",
    ...command,
  ];
}

/** Map a RunSpec onto `machine create` and `machine exec`; throws before anything boots when smolvm could not. */
export function planMachine(spec: RunSpec, sidecar: string, context: PlanContext): MachinePlan {
  const mounts = machineMounts(spec);
  const ports = spec.network.publish ?? [];
  if (mounts.length + ports.length > maxMountsAndPorts) {
    const extra = spec.mounts.length;
    const portsPart =
      ports.length > 0 ? `, plus ${ports.length} published port${ports.length > 1 ? "s" : ""}` : "";
    throw new BottleError(
      "INVALID_CONFIG",
      `smolmachines can attach at most ${maxMountsAndPorts} folders and published ports to a machine (smolvm's limit for mounts and ports together), and this run needs ${mounts.length + ports.length}: the workspace, the agent's home and ${extra} more${portsPart}`,
      {
        backend: "smolmachines",
        hint: `remove ${mounts.length + ports.length - maxMountsAndPorts} of the extra mounts or --publish ports, or run with --backend docker`,
      },
    );
  }
  if ((spec.network.hostPorts ?? []).length > 0) {
    // smolvm's host gateway relays to every port of the host's loopback at once, with no way to
    // name one port: allowing it would open all of this machine's local services, not one.
    throw new BottleError(
      "INVALID_CONFIG",
      `--allow-host-port (network.hostPorts) is not available on smolmachines: smolvm can open all of this machine's loopback services to a VM or none, not one port`,
      { backend: "smolmachines", hint: "run with --backend docker to reach one port of this machine" },
    );
  }
  const user = spec.user ?? fallbackAgentUser;
  if (user.uid === 0) {
    throw new BottleError(
      "INVALID_CONFIG",
      "the agent never runs as root in a smolmachines VM (spec.user is uid 0)",
      {
        backend: "smolmachines",
        hint: "run claude-bottle as a regular user, or give the workspace to one",
      },
    );
  }
  const credentials = planCredentials(spec, context);
  const api = guestApiUrl(spec);
  const warnings: string[] = [];
  let network = machineNetwork(spec.network, apiHostOf(spec));
  if (api.gateway) {
    // The guest's own 127.0.0.1 is the guest; the host's loopback is behind the gateway.
    const cidr = `${api.gateway}/${isIP(api.gateway) === 6 ? 128 : 32}`;
    const loopbackCidr = (value: string) => /^127\.|^::1\//.test(value);
    network =
      network.kind === "allowlist"
        ? { ...network, cidrs: [...network.cidrs.filter((c) => !loopbackCidr(c)), cidr] }
        : // `--net` alone picks TSI, which has no gateway; a policy that admits everything forces virtio-net.
          { kind: "allowlist", hosts: [], cidrs: ["0.0.0.0/0", "::/0"] };
    warnings.push(
      `anthropic.baseUrl is on this machine's loopback: the VM reaches it through smolvm's gateway (${api.gateway}), which also lets it reach every other service listening on this machine's loopback`,
    );
  }
  return {
    create: {
      from: sidecar,
      mounts,
      network,
      credentials: credentials.bindings,
      ...(ports.length > 0 && { ports: ports.map(({ port, hostPort }) => ({ port, hostPort })) }),
      ...(spec.resources.cpus !== undefined && { cpus: spec.resources.cpus }),
      ...(spec.resources.memoryMiB !== undefined && { memoryMiB: spec.resources.memoryMiB }),
    },
    exec: {
      command: dropPrivileges(user, spec.command),
      workdir: spec.workspace,
      env: {
        HOME: spec.homeTarget,
        ...(api.url && { ANTHROPIC_BASE_URL: api.url }),
        ...(credentials.bindings.length > 0 && {
          NODE_EXTRA_CA_CERTS: smolvmCaBundle,
          SSL_CERT_FILE: smolvmCaBundle,
        }),
        ...spec.env,
      },
      secrets: credentials.guestSecrets,
      tty: spec.tty,
      stdin: spec.stdin,
    },
    hostEnv: credentials.hostEnv,
    warnings,
  };
}
