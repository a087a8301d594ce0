/**
 * Fencing a bottle off from the host. A container reaches every address of the host through its
 * network's gateway, and packets to the host's own addresses go through the host's INPUT chain,
 * which Docker leaves alone (even for `--internal` networks). So without rules of our own the
 * bottle could talk to anything listening on the host: a local database, a notebook server, ports
 * other containers publish through docker-proxy.
 *
 * For each run, a chain of its own in the host's filter table, jumped to from the top of INPUT for
 * packets entering on the bottle network's bridge: TCP to the gateway on the host services' ports
 * is accepted, everything else rejected (so clients fail fast instead of hanging). Traffic the host
 * forwards (egress in `open` mode) goes through FORWARD and is not touched. Chains whose bridge is
 * gone (left by a run that was killed) are swept when the next run removes its own.
 *
 * Ways to get there, tried in order; the reason each was skipped is kept for one message:
 * - "host": claude-bottle is root on the machine the engine runs on: run iptables directly.
 * - "container": borrow the engine's privilege: a short-lived container in the host's network
 *   namespace with NET_ADMIN, from the agent image (the bundled one has iptables).
 * - otherwise the bottle runs unguarded and the run returns a warning saying why.
 *
 * The iptables work is a small POSIX sh script, the same for both ways, so each way costs one
 * process (or one container) to set up and one to tear down. Everything in a script is built here
 * from validated names, addresses and ports; nothing else is interpolated.
 */
import { access } from "node:fs/promises";
import { BottleError, type HostServices, type ImageEngine } from "@claude-bottle/core";
import { execa, type Result } from "execa";

/** Ways of fencing the host off, in the order they are tried by default. */
export type HostFirewallStrategy = "host" | "container";

export interface HostFirewallOptions {
  /** The ways to try, in order (default: "host", then "container"); none at all runs unguarded. */
  strategies?: readonly HostFirewallStrategy[];
}

/** What the guard needs to know about one bottle. */
export interface GuardInput {
  /** The bottle's name; names the helper containers. */
  bottle: string;
  /** The bottle's network's id (`docker network inspect`). */
  networkId: string;
  /** Its driver options; `com.docker.network.bridge.name` names its bridge when set. */
  networkOptions: Record<string, string>;
  /** The network's IPv4 gateway: where the host services listen. */
  gateway: string;
  /** The host services' TCP ports on the gateway. */
  ports: readonly number[];
  /** The image the helper container runs (the prepared agent image). */
  image: string;
}

/** The rules of one bottle, as the pure builders below take them. */
export interface GuardTarget {
  /** The chain's name (`guardChain`). */
  chain: string;
  /** The interface the bottle's packets enter the host on. */
  bridge: string;
  gateway: string;
  ports: readonly number[];
}

export interface HostGuard extends AsyncDisposable {
  /** How the host is fenced off, or undefined when it is not (then `warnings` says why). */
  readonly strategy: HostFirewallStrategy | undefined;
  /** For the user: set when the bottle runs unguarded. */
  readonly warnings: string[];
  /** Remove the bottle's rules (and stale ones found when they were added). Idempotent. */
  close(): Promise<void>;
}

/** Every chain claude-bottle adds starts with this. */
export const guardChainPrefix = "CLAUDE-BOTTLE-";

/** Exit status of a script that found no iptables (set in `scriptPrologue`). */
const missingTools = 101;
/** A helper container that runs away is stopped after this long. */
const scriptTimeoutMs = 60_000;

const hex12 = /^[0-9a-f]{12}$/;
const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Linux interface names: at most 15 characters; we accept the safe ones only. */
const interfaceName = /^[A-Za-z0-9_.-]{1,15}$/;
/** An argument of a rule read back from iptables-save that may go into a script unquoted. */
const safeToken = /^[A-Za-z0-9_.:/,+=-]+$/;

/**
 * The chain of the network with this id: the prefix and the id's first 12 hex digits, the same
 * digits Docker names the bridge after (`br-<12 hex>`). 26 characters; iptables allows 28.
 */
export function guardChain(networkId: string): string {
  const id = networkId.slice(0, 12).toLowerCase();
  if (!hex12.test(id)) throw new TypeError(`not a Docker network id: ${JSON.stringify(networkId)}`);
  return `${guardChainPrefix}${id}`;
}

/**
 * The bridge interface of a network, from `docker network inspect`: the name the network was
 * created with (`com.docker.network.bridge.name`), else Docker's default, `br-<first 12 of the id>`.
 */
export function bridgeOf(networkId: string, bridgeOption: string | undefined): string {
  const bridge = bridgeOption || `br-${networkId.slice(0, 12)}`;
  if (!interfaceName.test(bridge)) throw new TypeError(`not an interface name: ${JSON.stringify(bridge)}`);
  return bridge;
}

/** The TCP ports of the host services (the forwarder's, and the proxy's when one runs). */
export function hostServicePorts(services: Pick<HostServices, "apiUrl" | "proxyUrl">): number[] {
  const urls = [services.apiUrl, services.proxyUrl].filter((url): url is string => url !== undefined);
  return [...new Set(urls.map((url) => Number(new URL(url).port)))];
}

function checkTarget(target: GuardTarget): void {
  const ok =
    target.chain.startsWith(guardChainPrefix) &&
    hex12.test(target.chain.slice(guardChainPrefix.length)) &&
    interfaceName.test(target.bridge) &&
    ipv4.test(target.gateway) &&
    target.ports.length > 0 &&
    target.ports.every((port) => Number.isInteger(port) && port > 0 && port < 65_536);
  if (!ok) throw new TypeError(`invalid firewall target: ${JSON.stringify(target)}`);
}

/**
 * iptables-restore input (IPv4, filter table) that adds the bottle's chain and the jump to it at
 * the top of INPUT, in one atomic commit. Replies to connections the host opened are let through;
 * new TCP connections only to the gateway on the host services' ports; the rest is rejected, TCP
 * with a reset and anything else with ICMP port unreachable, so clients fail at once.
 */
export function ipv4GuardRules(target: GuardTarget): string {
  checkTarget(target);
  const { chain, bridge, gateway } = target;
  return [
    "*filter",
    `:${chain} - [0:0]`,
    `-A ${chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
    ...target.ports.map((port) => `-A ${chain} -d ${gateway}/32 -p tcp -m tcp --dport ${port} -j ACCEPT`),
    `-A ${chain} -p tcp -j REJECT --reject-with tcp-reset`,
    `-A ${chain} -j REJECT --reject-with icmp-port-unreachable`,
    `-I INPUT 1 -i ${bridge} -j ${chain}`,
    "COMMIT",
    "",
  ].join("\n");
}

/**
 * The same for IPv6, where the bottle needs nothing: the host services listen on IPv4 only. Docker
 * disables IPv6 on a container's interface in a network without IPv6 (bar 26.0.0 and 26.0.1, which
 * left link-local addresses on), so this is a second line of defence.
 */
export function ipv6GuardRules(target: GuardTarget): string {
  checkTarget(target);
  const { chain, bridge } = target;
  return [
    "*filter",
    `:${chain} - [0:0]`,
    `-A ${chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
    `-A ${chain} -p tcp -j REJECT --reject-with tcp-reset`,
    `-A ${chain} -j REJECT --reject-with icmp6-port-unreachable`,
    `-I INPUT 1 -i ${bridge} -j ${chain}`,
    "COMMIT",
    "",
  ].join("\n");
}

/** What the scripts print after their work, in sections the parser below splits. */
const sections = {
  ipv4: "@@claude-bottle ipv4",
  ipv6: "@@claude-bottle ipv6",
  interfaces: "@@claude-bottle interfaces",
};

/**
 * Wait for the xtables lock rather than fail when dockerd (or anyone) holds it: legacy iptables
 * takes a lock; the nft flavour ignores the option.
 */
const wait = "--wait=10";

/** Is IPv6 usable on this host (in this network namespace)? */
const hasIpv6 = "[ -e /proc/net/if_inet6 ] && command -v ip6tables >/dev/null 2>&1";

/** Stops with `missingTools` when iptables is not installed, before anything is changed. */
const scriptPrologue = [
  "set -u",
  "for tool in iptables iptables-restore iptables-save; do",
  `  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not installed" >&2; exit ${missingTools}; }`,
  "done",
];

/** Prints the filter tables and the host's interfaces, for `parseFirewallState`. */
const scriptEpilogue = [
  `echo '${sections.ipv4}'`,
  "iptables-save -t filter",
  `echo '${sections.ipv6}'`,
  `if ${hasIpv6}; then ip6tables-save -t filter || true; fi`,
  `echo '${sections.interfaces}'`,
  "ls /sys/class/net",
];

/**
 * The script that adds the bottle's rules (IPv4 must succeed; IPv6 is added where the host has it,
 * and its failure leaves the IPv4 guard standing) and then prints the state.
 */
export function applyScript(target: GuardTarget): string {
  return [
    ...scriptPrologue,
    `iptables-restore --noflush ${wait} <<'CLAUDE_BOTTLE_RULES' || exit 1`,
    ipv4GuardRules(target).trimEnd(),
    "CLAUDE_BOTTLE_RULES",
    `if ${hasIpv6}; then`,
    `ip6tables-restore --noflush ${wait} <<'CLAUDE_BOTTLE_RULES' || true`,
    ipv6GuardRules(target).trimEnd(),
    "CLAUDE_BOTTLE_RULES",
    "fi",
    ...scriptEpilogue,
  ].join("\n");
}

/** One chain to remove in one address family, with the INPUT rules that jump to it (as argv after `-A INPUT`). */
export interface ChainToRemove {
  family: "ipv4" | "ipv6";
  chain: string;
  jumps: readonly (readonly string[])[];
}

/**
 * The script that removes chains and the jumps to them, then prints the state. Each step may fail
 * without stopping the rest: another run may be sweeping the same stale chain.
 */
export function removeScript(chains: readonly ChainToRemove[]): string {
  const lines = [...scriptPrologue];
  for (const { family, chain, jumps } of chains) {
    if (!chain.startsWith(guardChainPrefix) || !safeToken.test(chain)) continue;
    const iptables = family === "ipv4" ? "iptables" : "ip6tables";
    for (const jump of jumps) {
      if (jump.every((token) => safeToken.test(token)))
        lines.push(`${iptables} -w 10 -D INPUT ${jump.join(" ")} || true`);
    }
    lines.push(`${iptables} -w 10 -F ${chain} || true`, `${iptables} -w 10 -X ${chain} || true`);
  }
  lines.push(...scriptEpilogue);
  return lines.join("\n");
}

/** A chain of ours found in a filter table, with the INPUT rules that jump to it. */
export interface GuardChainState {
  chain: string;
  /** Each jump's arguments after `-A INPUT`, e.g. `["-i", "br-0123456789ab", "-j", chain]`. */
  jumps: string[][];
}

export interface FirewallState {
  ipv4: GuardChainState[];
  ipv6: GuardChainState[];
  /** Network interfaces that exist on the host. */
  interfaces: string[];
}

/** Split a script's output into the two filter tables' chains of ours and the host's interfaces. */
export function parseFirewallState(output: string): FirewallState {
  const text: Record<keyof typeof sections, string[]> = { ipv4: [], ipv6: [], interfaces: [] };
  let current: keyof typeof sections | undefined;
  for (const line of output.split("\n")) {
    const section = (Object.keys(sections) as (keyof typeof sections)[]).find(
      (key) => sections[key] === line,
    );
    if (section) current = section;
    else if (current) text[current].push(line);
  }
  return {
    ipv4: guardChainsIn(text.ipv4),
    ipv6: guardChainsIn(text.ipv6),
    interfaces: text.interfaces.flatMap((line) => line.split(/\s+/)).filter(Boolean),
  };
}

/** Our chains in iptables-save output: declared (`:CHAIN - [0:0]`) or jumped to from INPUT. */
function guardChainsIn(lines: readonly string[]): GuardChainState[] {
  const chains = new Map<string, string[][]>();
  const ours = (name: string | undefined): name is string => name?.startsWith(guardChainPrefix) ?? false;
  for (const line of lines) {
    const declared = /^:(\S+) /.exec(line)?.[1];
    if (ours(declared) && !chains.has(declared)) chains.set(declared, []);
    if (!line.startsWith("-A INPUT ")) continue;
    const args = line.slice("-A INPUT ".length).trim().split(/\s+/);
    const target = args[args.indexOf("-j") + 1];
    if (args.includes("-j") && ours(target)) chains.set(target, [...(chains.get(target) ?? []), args]);
  }
  return [...chains].map(([chain, jumps]) => ({ chain, jumps }));
}

/**
 * Chains of ours whose bottle is gone: every interface their jumps name (or, without a jump, the
 * bridge named after the chain's id) no longer exists. `keep` is never stale.
 */
export function staleChains(state: FirewallState, keep: string): ChainToRemove[] {
  const present = new Set(state.interfaces);
  const stale: ChainToRemove[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    for (const { chain, jumps } of state[family]) {
      if (chain === keep) continue;
      const bridges = jumps
        .filter((jump) => jump.includes("-i"))
        .map((jump) => jump[jump.indexOf("-i") + 1])
        .filter((name): name is string => name !== undefined);
      const named = bridges.length > 0 ? bridges : [`br-${chain.slice(guardChainPrefix.length)}`];
      if (named.every((bridge) => !present.has(bridge))) stale.push({ family, chain, jumps });
    }
  }
  return stale;
}

/** Runs a firewall script as root in the engine's network namespace. */
interface RootShell {
  strategy: HostFirewallStrategy;
  run(script: string): Promise<Result>;
}

/** A way that cannot be used here, and why (for the warning). */
class Skipped extends Error {}

/**
 * Put the bottle's guard in place, trying each strategy in turn. Resolves with the guard; when no
 * strategy worked, with an empty guard and a warning that says why each was skipped.
 */
export async function guardHost(
  engine: ImageEngine,
  input: GuardInput,
  options: HostFirewallOptions = {},
): Promise<HostGuard> {
  const target: GuardTarget = {
    chain: guardChain(input.networkId),
    bridge: bridgeOf(input.networkId, input.networkOptions["com.docker.network.bridge.name"]),
    gateway: input.gateway,
    ports: input.ports,
  };
  const reasons: string[] = [];
  for (const strategy of options.strategies ?? ["host", "container"]) {
    try {
      const shell = strategy === "host" ? await hostShell(target) : containerShell(engine, input);
      const state = await apply(shell, target);
      return guard(shell, target, state, input.bottle);
    } catch (error) {
      if (!(error instanceof Skipped)) throw error;
      reasons.push(`${strategyLabel[strategy]}: ${error.message}`);
    }
  }
  const close = async () => {};
  return {
    strategy: undefined,
    warnings: [unguardedWarning(reasons)],
    close,
    [Symbol.asyncDispose]: close,
  };
}

const strategyLabel: Record<HostFirewallStrategy, string> = {
  host: "iptables on this machine",
  container: "a helper container",
};

export function unguardedWarning(reasons: readonly string[]): string {
  const why = reasons.length > 0 ? reasons.join("; ") : "no way of adding them is enabled";
  return (
    "this bottle is not fenced off from your machine: it can reach services listening on the host " +
    `(a local database, a dev server, ports other containers publish). claude-bottle could not add its firewall rules (${why}). ` +
    "Use an agent image that has iptables (the bundled one does), or run claude-bottle as root."
  );
}

/** Root on the machine whose network namespace holds the bridge: run sh directly. */
async function hostShell(target: GuardTarget): Promise<RootShell> {
  if (process.getuid?.() !== 0) throw new Skipped("claude-bottle is not running as root");
  const local = await access(`/sys/class/net/${target.bridge}`).then(
    () => true,
    () => false,
  );
  if (!local) {
    throw new Skipped(
      `the bottle's network (${target.bridge}) is not on this machine; the Docker engine runs elsewhere`,
    );
  }
  return {
    strategy: "host",
    run: (script) =>
      execa("sh", ["-c", script], { reject: false, stdin: "ignore", timeout: scriptTimeoutMs }),
  };
}

/**
 * A short-lived container in the engine's network namespace, with just the capabilities iptables
 * needs, from the agent image (whose own user has none: the bottle never gets them).
 */
function containerShell(engine: ImageEngine, input: GuardInput): RootShell {
  let runs = 0;
  return {
    strategy: "container",
    run: (script) =>
      engine.spawn(
        [
          ...["run", "--rm", "--name", `${input.bottle}-firewall-${++runs}`, "--network", "host"],
          ...["--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"],
          ...["--security-opt", "no-new-privileges", "--log-driver", "none"],
          ...["--user", "0", "--entrypoint", "sh", input.image, "-c", script],
        ],
        { reject: false, stdin: "ignore", timeout: scriptTimeoutMs },
      ),
  };
}

async function apply(shell: RootShell, target: GuardTarget): Promise<FirewallState> {
  const result = await shell.run(applyScript(target));
  const state = result.exitCode === 0 ? parseFirewallState(String(result.stdout)) : undefined;
  if (state?.ipv4.some(({ chain }) => chain === target.chain)) return state;
  // It may have got halfway (IPv4 rules in, then a failure): take out what is there.
  if (result.exitCode !== missingTools) {
    await shell.run(removeScript(ownChains(target))).catch(() => undefined);
  }
  throw new Skipped(
    state
      ? `the rules did not show up in iptables-save after iptables-restore`
      : whyFailed(shell.strategy, result),
  );
}

function whyFailed(strategy: HostFirewallStrategy, result: Result): string {
  const stderr = String(result.stderr ?? "").trim();
  const firstLine = stderr.split("\n").find(Boolean) ?? "";
  if (result.exitCode === missingTools) {
    return strategy === "host" ? firstLine : `the image has no iptables (${firstLine})`;
  }
  if (strategy === "container" && (result.exitCode === 126 || result.exitCode === 127)) {
    return `the image cannot run sh (${firstLine || `exit ${result.exitCode}`})`;
  }
  if (result.timedOut) return `iptables did not finish within ${scriptTimeoutMs / 1000} s`;
  // Not started at all (no sh, say): execa's own account of it.
  if (result.exitCode === undefined)
    return (result as { shortMessage?: string }).shortMessage ?? "it did not run";
  return `iptables failed (exit ${result.exitCode}${firstLine ? `: ${firstLine}` : ""})`;
}

function ownChains(target: GuardTarget): ChainToRemove[] {
  const jump = ["-i", target.bridge, "-j", target.chain];
  return [
    { family: "ipv4", chain: target.chain, jumps: [jump] },
    { family: "ipv6", chain: target.chain, jumps: [jump] },
  ];
}

function guard(shell: RootShell, target: GuardTarget, state: FirewallState, bottle: string): HostGuard {
  // Only the families where our chain went in; stale chains of other bottles go with ours.
  const own = ownChains(target).filter(({ family }) =>
    state[family].some(({ chain }) => chain === target.chain),
  );
  const toRemove = [...own, ...staleChains(state, target.chain)];
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= remove(shell, target, toRemove, bottle);
    return closing;
  };
  return { strategy: shell.strategy, warnings: [], close, [Symbol.asyncDispose]: close };
}

async function remove(
  shell: RootShell,
  target: GuardTarget,
  chains: readonly ChainToRemove[],
  bottle: string,
): Promise<void> {
  const result = await shell.run(removeScript(chains));
  const state = result.exitCode === 0 ? parseFirewallState(String(result.stdout)) : undefined;
  const left = state && [...state.ipv4, ...state.ipv6].some(({ chain }) => chain === target.chain);
  if (state && !left) return;
  throw new BottleError("RUN_FAILED", `could not remove the firewall rules of the bottle ${bottle}`, {
    backend: "docker",
    hint:
      `remove them as root: iptables -D INPUT -i ${target.bridge} -j ${target.chain}; ` +
      `iptables -F ${target.chain}; iptables -X ${target.chain} (and the same with ip6tables)`,
    cause: result,
  });
}
