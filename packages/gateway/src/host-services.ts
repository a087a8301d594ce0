/**
 * Host-side services a bottle reaches over its network, started by a backend for one run:
 *
 * - the API forwarder (api-forwarder.ts), through which Claude Code inside talks to the Anthropic
 *   API (or `anthropic.baseUrl`, which may be a loopback address on the host). It holds the real
 *   credential; the bottle gets a placeholder.
 * - the egress proxy (egress-proxy.ts), the bottle's only way to anything else, in `allowlist`
 *   mode. In `open` mode the backend gives the bottle an ordinary network and no proxy runs; in
 *   `none` mode the forwarder is all the bottle reaches.
 *
 * Backends start these on an address the bottle can reach and nothing else can route through
 * (the gateway of an internal Docker network, for instance), put `env` into the bottle, and put
 * `secrets` in the way they keep secrets (empty unless credentials pass through).
 */

import {
  BottleError,
  credentialNames,
  defaultAnthropicBaseUrl,
  type NetworkPolicyInput,
  resolveNetworkAccess,
} from "@claude-bottle/core";
import { type ApiForwarder, startApiForwarder } from "./api-forwarder.js";
import { chooseCredential, newPlaceholderCredential, serviceEnv } from "./bottle-env.js";
import {
  type Denial,
  type EgressProxy,
  type EgressProxyLimits,
  preloadEgressProxy,
  type ResolveHost,
  startEgressProxy,
} from "./egress-proxy.js";

/*
 * The forwarder stands in for one of core's `credentialNames`. In its place the bottle's
 * environment holds a placeholder that is new for every run (`newPlaceholderCredential`): the
 * forwarder takes requests only with it, so nothing else that reaches the forwarder can use the
 * user's credential, and a placeholder seen in one run is worth nothing in the next.
 */

export interface HostServicesOptions {
  /** The host address the bottle reaches the host on; the services listen there. */
  bindHost: string;
  /** Where API requests go (anthropic.baseUrl); default https://api.anthropic.com. */
  anthropicBaseUrl?: string;
  /** The agent's real credentials (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, ANTHROPIC_AUTH_TOKEN). */
  secrets: Record<string, string>;
  /** The run's network policy (config plus `--allow`, merged by the CLI's settings). */
  network: NetworkPolicyInput;
  /** credentials.passthrough: hand the real credentials to the bottle (core's capabilityGaps warns about it). */
  passthroughCredentials?: boolean;
  /**
   * The placeholder the bottle was given in place of the credential (new for each run); default:
   * a fresh one. A container bottle gets its environment from the CLI before its gateway starts.
   */
  placeholder?: string;
  /** The per-run denial log: one JSON line per refused connection, with host and time. */
  deniedLogPath?: string;
  /** Called with each refusal of the egress proxy (where the log is kept by another process). */
  onDenial?: (denial: Denial) => void;
  /** How the egress proxy resolves allowed names; default: the host's resolver. */
  resolve?: ResolveHost;
  /**
   * Address blocks the bottle must never reach through the proxy, whatever the allow-list says:
   * the engine's address pools, the bottle network's subnet, other bottles' networks. The host's
   * own addresses (looked up live) and cloud metadata addresses are always refused.
   */
  forbiddenRanges?: readonly string[];
  /**
   * Address blocks that are the host itself, on top of this machine's own addresses: where the
   * services run in a container, the engine's machine and the user's are elsewhere.
   */
  hostRanges?: readonly string[];
  /** Limits of the egress proxy (idle timeout, tunnels, denial log size, summary length). */
  proxyLimits?: EgressProxyLimits;
}

export interface HostServices extends AsyncDisposable {
  /** Environment for inside the bottle: where the API is, placeholders, and how to reach the network. */
  readonly env: Record<string, string>;
  /** Credentials that still have to go into the bottle: empty unless they pass through. */
  readonly secrets: Record<string, string>;
  /** The forwarder's URL (also `env.ANTHROPIC_BASE_URL`). */
  readonly apiUrl: string;
  /** The egress proxy's URL, when one runs (`allowlist` mode). */
  readonly proxyUrl: string | undefined;
  /** Hosts the bottle tried to reach and was refused, in order of first refusal. */
  deniedHosts(): string[];
  close(): Promise<void>;
}

/**
 * Begin loading the code the host services for `network` need, ahead of `startHostServices`: a
 * backend calls this before slow work of its own (creating the bottle's network) so that the two
 * overlap. Starts nothing; a failure to load surfaces from `startHostServices`.
 */
export function preloadHostServices(network: NetworkPolicyInput): void {
  if ((network.mode ?? "allowlist") === "allowlist") preloadEgressProxy();
}

export async function startHostServices(options: HostServicesOptions): Promise<HostServices> {
  const passthrough = options.passthroughCredentials ?? false;
  const chosen = passthrough ? undefined : chooseCredential(options.secrets);
  if (chosen && !/^[\x21-\x7e]+$/.test(chosen.value)) {
    throw new BottleError("INVALID_CONFIG", `${chosen.name} holds characters an HTTP header cannot carry`, {
      hint: `check ${chosen.name} in your environment for stray spaces, quotes or line breaks`,
    });
  }
  const access = resolveNetworkAccess(options.network);
  const upstream = options.anthropicBaseUrl ?? defaultAnthropicBaseUrl;

  const placeholder = chosen ? (options.placeholder ?? newPlaceholderCredential()) : undefined;
  let forwarder: ApiForwarder | undefined;
  let proxy: EgressProxy | undefined;
  try {
    forwarder = await startApiForwarder({
      host: options.bindHost,
      upstream,
      ...(chosen ? { credential: { kind: chosen.kind, value: chosen.value }, placeholder } : {}),
    });
    if (access.mode === "allowlist") {
      proxy = await startEgressProxy({
        host: options.bindHost,
        allow: access.entries,
        ...(options.resolve ? { resolve: options.resolve } : {}),
        ...(options.deniedLogPath ? { deniedLogPath: options.deniedLogPath } : {}),
        ...(options.onDenial ? { onDenial: options.onDenial } : {}),
        ...(options.forbiddenRanges ? { forbiddenRanges: options.forbiddenRanges } : {}),
        ...(options.hostRanges ? { hostRanges: options.hostRanges } : {}),
        ...(options.proxyLimits ? { limits: options.proxyLimits } : {}),
      });
    }
  } catch (error) {
    await forwarder?.close();
    // Listening and opening the denial log fail with messages that hold addresses and paths, no secrets.
    const reason = error instanceof Error ? `: ${error.message}` : "";
    throw new BottleError(
      "RUN_FAILED",
      `claude-bottle could not start its host services on ${options.bindHost}${reason}`,
      {
        hint: "check that this address belongs to the host (the bottle network's gateway) and that the denial log's folder exists",
        cause: error,
      },
    );
  }

  const env = serviceEnv({
    apiUrl: forwarder.url,
    proxyUrl: proxy?.url,
    mode: access.mode,
    credential: chosen && placeholder ? { name: chosen.name, placeholder } : undefined,
    bindHost: options.bindHost,
  });

  const secrets = passthrough ? { ...options.secrets } : otherSecrets(options.secrets);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all([forwarder.close(), proxy?.close()]);
  };
  return {
    env,
    secrets,
    apiUrl: forwarder.url,
    proxyUrl: proxy?.url,
    deniedHosts: () => proxy?.deniedHosts() ?? [],
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Secrets the forwarder cannot stand in for (none of the API credentials) still go in as they are. */
function otherSecrets(secrets: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secrets).filter(([name]) => !(credentialNames as readonly string[]).includes(name)),
  );
}
