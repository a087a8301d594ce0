/**
 * What a run asks for that its backend does not declare (BackendCapabilities), worked out before
 * the bottle starts. A gap that would leave a boundary open without the user knowing is refused:
 * the credential inside the bottle, an allow-list not held, host ports or published ports silently
 * absent. A gap that only weakens a guarantee is a warning the CLI prints before the run: no denial
 * log, a resource limit not applied, git's files not read-only, files owned by another user.
 */
import type { Backend } from "./backend.js";
import { BottleError } from "./errors.js";
import type { RunSpec } from "./run-spec.js";

export interface CapabilityGaps {
  /** Why the run must not start (the first gap that refuses), or undefined. */
  refusal?: BottleError;
  /** What the user must know before the run, one line each. */
  warnings: string[];
}

/** What the CLI prints before a run with `credentials.passthrough` on. */
export const passthroughWarning =
  "credentials.passthrough is on: your real Anthropic credential is inside the bottle, where anything " +
  "the agent runs can read it and send it wherever the network allows. Turn it off unless you need it.";

const resourceNames = { cpus: "cpus", memoryMiB: "memoryMiB", pids: "pids" } as const;

export function capabilityGaps(
  backend: Pick<Backend, "name" | "capabilities">,
  spec: RunSpec,
): CapabilityGaps {
  const can = backend.capabilities ?? {};
  const name = backend.name;
  const refusals: BottleError[] = [];
  const warnings: string[] = [];

  if (Object.keys(spec.secrets).length > 0 && !spec.passthroughCredentials && !can.credentials) {
    refusals.push(
      new BottleError(
        "INVALID_CONFIG",
        `the ${name} backend cannot keep your credential outside the bottle, where the agent could read it and send it anywhere`,
        {
          hint: "set credentials.passthrough: true to hand it in anyway, or use a backend that keeps it outside (docker, podman)",
          backend: name,
        },
      ),
    );
  }
  if (spec.network.mode !== "open" && !can.egress) {
    refusals.push(
      new BottleError("INVALID_CONFIG", `the ${name} backend cannot hold the network allow-list`, {
        hint: "set network.mode to open (CLAUDE_BOTTLE_NETWORK=open) to go without one, or use a backend that holds it (docker, podman)",
        backend: name,
      }),
    );
  }
  const asked = [
    {
      on: (spec.network.hostPorts ?? []).length > 0,
      claimed: can.hostPorts,
      what: "--allow-host-port (network.hostPorts)",
    },
    {
      on: (spec.network.publish ?? []).length > 0,
      claimed: can.publish,
      what: "--publish (network.publish)",
    },
  ];
  for (const { on, claimed, what } of asked) {
    if (on && !claimed) {
      refusals.push(
        new BottleError("INVALID_CONFIG", `${what}: the ${name} backend cannot do this`, {
          hint: "remove it, or use a backend that can (docker, podman)",
          backend: name,
        }),
      );
    }
  }

  if (spec.passthroughCredentials) warnings.push(passthroughWarning);
  if (spec.network.mode === "allowlist" && can.egress && !can.denialLog) {
    warnings.push(
      `the ${name} backend refuses what is not on the allow-list but cannot say what it refused; claude-bottle will not list blocked hosts after this run`,
    );
  }
  if (spec.user && !can.user) {
    warnings.push(
      `the ${name} backend cannot run the agent as uid ${spec.user.uid}: files it writes in ${spec.workspace} may belong to another user`,
    );
  }
  const unmet = (Object.keys(resourceNames) as (keyof typeof resourceNames)[]).filter(
    (key) => spec.resources[key] !== undefined && !can.resources?.[key],
  );
  if (unmet.length > 0) {
    warnings.push(
      `the ${name} backend cannot apply resources.${unmet.join(", resources.")} here; the bottle runs without ${unmet.length === 1 ? "that limit" : "those limits"}`,
    );
  }
  if (spec.readOnlyPaths.length > 0 && !can.readOnlyPaths) {
    warnings.push(
      `the ${name} backend cannot keep .git/config, .git/hooks and .gitmodules read-only in the bottle; claude-bottle names every change to them after the run, read it before you run git here`,
    );
  }
  return { ...(refusals[0] && { refusal: refusals[0] }), warnings };
}
