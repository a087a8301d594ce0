/**
 * The environment a bottle's command gets from its services: where the API is, the placeholder in
 * place of the real credential, and the proxy. One home for it, used where the services run (the
 * host services, for a VM) and where the CLI starts a container bottle: there it is computed before
 * the gateway is up, so that the bottle's command need not wait for the gateway to start (the relay
 * holds each connection until the gateway's sockets are there; see relay.ts).
 *
 * Light on purpose (Node's crypto only): the CLI loads it on every run.
 */
import { randomBytes } from "node:crypto";
import type { credentialNames } from "@claude-bottle/core";

type CredentialName = (typeof credentialNames)[number];

/**
 * Claude Code remembers the custom API keys a user approved by their last 20 characters
 * (`customApiKeyResponses.approved` in ~/.claude.json). Every placeholder ends in these 20, so
 * one approval of "claude-bottle's placeholder" holds for every run while the part before it is
 * new each run. They are the last 20 characters of the fixed placeholder earlier versions used,
 * so bottle homes that approved it stay approved.
 */
export const placeholderApprovalSuffix = "-placeholder-api-key";

/** A fresh placeholder: a recognisable prefix, 32 random bytes (base64url), the approval suffix. */
export function newPlaceholderCredential(): string {
  return `claude-bottle-placeholder-${randomBytes(32).toString("base64url")}${placeholderApprovalSuffix}`;
}

export type ApiCredentialKind = "api-key" | "bearer";

/**
 * The credential the forwarder adds: an API key if there is one (sent as x-api-key), else a
 * bearer token (ANTHROPIC_AUTH_TOKEN, then CLAUDE_CODE_OAUTH_TOKEN). Claude Code inside gets the
 * placeholder under the same name, so it sends the matching header and the forwarder swaps it.
 */
export function chooseCredential(
  secrets: Readonly<Record<string, string>>,
): { name: CredentialName; kind: ApiCredentialKind; value: string } | undefined {
  const order: [CredentialName, ApiCredentialKind][] = [
    ["ANTHROPIC_API_KEY", "api-key"],
    ["ANTHROPIC_AUTH_TOKEN", "bearer"],
    ["CLAUDE_CODE_OAUTH_TOKEN", "bearer"],
  ];
  for (const [name, kind] of order) {
    const value = secrets[name];
    if (value) return { name, kind, value };
  }
  return undefined;
}

export interface ServiceEnvInput {
  /** The forwarder's URL as the bottle reaches it. */
  apiUrl: string;
  /** The egress proxy's URL as the bottle reaches it, when one runs (`allowlist` mode). */
  proxyUrl?: string | undefined;
  /** The network mode (`allowlist`, `open` or `none`). */
  mode: "allowlist" | "open" | "none";
  /** The credential the forwarder stands in for, and the placeholder the bottle gets under its name. */
  credential?: { name: string; placeholder: string } | undefined;
  /** The address the services are reached at: never through the proxy. */
  bindHost: string;
}

export function serviceEnv(input: ServiceEnvInput): Record<string, string> {
  const env: Record<string, string> = { ANTHROPIC_BASE_URL: input.apiUrl };
  if (input.credential) env[input.credential.name] = input.credential.placeholder;
  if (input.mode !== "open") {
    // Claude Code's telemetry, error reports and update checks cannot get out; don't let it try.
    env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1";
  }
  if (input.proxyUrl) {
    const noProxy = [...new Set(["localhost", "127.0.0.1", "::1", input.bindHost])].join(",");
    Object.assign(env, {
      HTTP_PROXY: input.proxyUrl,
      HTTPS_PROXY: input.proxyUrl,
      http_proxy: input.proxyUrl,
      https_proxy: input.proxyUrl,
      NO_PROXY: noProxy,
      no_proxy: noProxy,
    });
  }
  return env;
}
