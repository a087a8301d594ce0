/**
 * What the CLI and the gateway say to each other over the gateway's stdin and stdout.
 *
 * The CLI starts the gateway as an attached `docker run -i` and writes one JSON line, the
 * configuration, to its stdin. That is the only way the real credential reaches the gateway: not
 * argv, not env, so neither `docker inspect` nor the engine's logs ever hold it. When the CLI closes
 * stdin (or dies, which closes it too) the gateway shuts down.
 *
 * The gateway answers with JSON lines on stdout: `ready`, `failed` (with a message for the user), a
 * denial per refused connection (core's `Denial`, as the egress proxy writes it to its log), and
 * `closed` with the refused hosts once it has stopped.
 */

import { networkPolicySchema } from "@claude-bottle/core/network-policy";
import { z } from "zod";
import type { Denial } from "./egress-proxy.js";
import { runIdPattern } from "./layout.js";

export const gatewayConfigSchema = z.strictObject({
  /** Where API requests go, as the gateway reaches it (a loopback URL already rewritten). */
  anthropicBaseUrl: z.url().optional(),
  /**
   * Check at start that the upstream accepts a TCP connection, and fail with `upstreamHint`
   * otherwise: for a loopback `anthropic.baseUrl`, reached through the engine's host route.
   */
  probeUpstream: z.boolean().default(false),
  /** What to tell the user when the probe fails (names the URL as they configured it). */
  upstreamHint: z.string().optional(),
  /** The API credentials the forwarder puts on requests (only those; never passed-through ones). */
  secrets: z.record(z.string(), z.string()).default({}),
  passthroughCredentials: z.boolean().default(false),
  /**
   * The placeholder the CLI gave the bottle (in its environment) in place of the credential: the
   * forwarder takes requests only with it. New for each run.
   */
  placeholder: z.string().min(32).optional(),
  network: networkPolicySchema,
  /**
   * The run's id, for a warm gateway (warm.ts): its sockets go in `runs/<id>/` of the meeting folder.
   * A gateway of the run's own puts them at the folder's top and takes none.
   */
  runId: z.string().regex(runIdPattern).optional(),
  /**
   * The addresses of the machine that runs the CLI: the egress proxy treats them as the host itself,
   * beside those it finds on its own (its interfaces, its default routes, `engineHost`).
   */
  cliHostAddresses: z.array(z.string()).default([]),
  /**
   * The name the engine gives its own machine inside containers: where an allowed host port is
   * (`network.hostPorts`), and an address the proxy refuses. Docker's `host.docker.internal`,
   * Podman's `host.containers.internal`.
   */
  engineHost: z.string().default("host.docker.internal"),
});
export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;

export type GatewayStop = "ended" | "stdin" | "signal";

export type GatewayMessage =
  | { gateway: "ready" }
  | { gateway: "failed"; message: string; hint?: string }
  /**
   * Stopped, and why: `ended` (the bottle's relay said its command ended), `stdin` (the CLI closed
   * its stdin) or `signal` (something else stopped its container: `docker stop`, `podman rm -f`).
   */
  | { gateway: "closed"; deniedHosts: string[]; why: GatewayStop };

/** One line of the gateway's stdout, read: a message, a denial, or something else (ignored). */
export type GatewayLine =
  | { kind: "message"; message: GatewayMessage }
  | { kind: "denial"; denial: Denial }
  | { kind: "other"; text: string };

export function readGatewayLine(text: string): GatewayLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: "other", text };
  }
  if (typeof value !== "object" || value === null) return { kind: "other", text };
  const record = value as Record<string, unknown>;
  if (record.gateway === "ready") return { kind: "message", message: { gateway: "ready" } };
  if (record.gateway === "failed" && typeof record.message === "string") {
    return {
      kind: "message",
      message: {
        gateway: "failed",
        message: record.message,
        ...(typeof record.hint === "string" && { hint: record.hint }),
      },
    };
  }
  if (record.gateway === "closed" && Array.isArray(record.deniedHosts)) {
    const why: GatewayStop = record.why === "ended" || record.why === "stdin" ? record.why : "signal";
    return {
      kind: "message",
      message: { gateway: "closed", deniedHosts: record.deniedHosts.map(String), why },
    };
  }
  if (typeof record.time === "string" && typeof record.host === "string" && typeof record.reason === "string")
    return { kind: "denial", denial: record as unknown as Denial };
  return { kind: "other", text };
}
