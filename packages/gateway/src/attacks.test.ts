// The attack suite's own tests. They run the attacks against a TEST FIXTURE, a backend that runs
// the bottle's command as a plain child process on this machine (not a sandbox, not shipped),
// with host services on 127.0.0.1. With core's real host services every attack is withstood; with
// a deliberately flawed forwarder or proxy, the attacks on what it gets wrong succeed, so the
// suite can tell a broken backend from a sound one.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { request as httpRequest, createServer as httpServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Backend, RunResult, RunSpec } from "@claude-bottle/core";
import { resolveNetworkAccess } from "@claude-bottle/core";
import {
  type AttackContext,
  AttackSucceeded,
  backendAttacks,
  createAttackContext,
} from "@claude-bottle/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEgressProxy } from "./egress-proxy.js";
import { startHostServices } from "./host-services.js";

/** How a variant of the fixture is broken. */
type Flaw = "naive-forwarder" | "proxy-trusts-host";

/**
 * A forwarder as claude-bottle's was before it was hardened: it adds the key to whatever arrives,
 * on any method and path, and pipes bodies without framing them.
 */
async function naiveForwarder(upstream: string, key: string) {
  const target = new URL(upstream);
  const server = httpServer((req, res) => {
    const headers = { ...req.headers, host: target.host, "x-api-key": key };
    delete headers["transfer-encoding"];
    const outgoing = httpRequest(
      { hostname: target.hostname, port: target.port, path: req.url, method: req.method, headers },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        reply.pipe(res);
      },
    );
    outgoing.on("error", () => res.destroy());
    req.pipe(outgoing);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** TEST FIXTURE: runs the bottle's command as a child process, with host services on 127.0.0.1. */
function hostProcessBackend(flaw?: Flaw): Backend<{ imageRef: string }> {
  return {
    name: "host-process-fixture",
    async checkAvailability() {
      return { available: true, version: `Node.js ${process.version}` };
    },
    async prepare(imageRef) {
      return { imageRef };
    },
    async run(_prepared, spec: RunSpec): Promise<RunResult> {
      const services = await startHostServices({
        bindHost: "127.0.0.1",
        ...(spec.anthropicBaseUrl && { anthropicBaseUrl: spec.anthropicBaseUrl }),
        secrets: spec.secrets,
        network: spec.network,
      });
      const env: Record<string, string> = { ...services.env };
      const extra: { close(): Promise<void> }[] = [];
      if (flaw === "naive-forwarder") {
        const forwarder = await naiveForwarder(spec.anthropicBaseUrl!, spec.secrets.ANTHROPIC_API_KEY!);
        extra.push(forwarder);
        env.ANTHROPIC_BASE_URL = forwarder.url;
      }
      if (flaw === "proxy-trusts-host") {
        const access = resolveNetworkAccess(spec.network);
        const proxy = await startEgressProxy({
          host: "127.0.0.1",
          allow: access.mode === "allowlist" ? access.entries : [],
          isHostLocal: () => false,
        });
        extra.push(proxy);
        for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]) env[name] = proxy.url;
      }
      try {
        const [file, ...args] = spec.command;
        const child = spawn(file!, args, {
          cwd: spec.workspace,
          env: { PATH: process.env.PATH, HOME: spec.home, ...spec.env, ...env },
          stdio: "ignore",
        });
        const [code] = (await once(child, "exit")) as [number | null];
        return { exitCode: code ?? 1, deniedHosts: services.deniedHosts() };
      } finally {
        await Promise.all([services.close(), ...extra.map((service) => service.close())]);
      }
    },
  };
}

async function contextFor(flaw?: Flaw) {
  return createAttackContext({
    name: `host-process fixture${flaw ? ` (${flaw})` : ""}`,
    createBackend: () => hostProcessBackend(flaw),
    imageRef: "host-process",
  });
}

const attack = (id: string) => {
  const found = backendAttacks.find((candidate) => candidate.id === id);
  if (!found) throw new Error(`no attack ${id}`);
  return found;
};

describe("the attack suite against core's real host services", () => {
  let context: (AttackContext & { close(): Promise<void> }) | undefined;
  beforeAll(async () => {
    context = (await contextFor()) as AttackContext & { close(): Promise<void> };
  });
  afterAll(() => context?.close());

  for (const { id, title } of backendAttacks) {
    it(`withstands ${id}: ${title}`, async () => {
      await attack(id).run(context!);
    }, 60_000);
  }
});

describe("the attack suite finds what a flawed backend gets wrong", () => {
  it("an open, unframing forwarder: relaying, smuggling, paths and methods all succeed", async () => {
    const context = (await contextFor("naive-forwarder")) as AttackContext & { close(): Promise<void> };
    try {
      for (const id of [
        "forwarder-open-relay",
        "forwarder-smuggling",
        "forwarder-paths",
        "forwarder-methods",
      ]) {
        await expect(attack(id).run(context), id).rejects.toBeInstanceOf(AttackSucceeded);
      }
    } finally {
      await context.close();
    }
  }, 120_000);

  it("a proxy that does not know the host's addresses: a CIDR rule opens the host", async () => {
    const context = (await contextFor("proxy-trusts-host")) as AttackContext & { close(): Promise<void> };
    try {
      await expect(attack("proxy-host-by-cidr").run(context)).rejects.toBeInstanceOf(AttackSucceeded);
      await expect(attack("proxy-host-by-name").run(context)).rejects.toBeInstanceOf(AttackSucceeded);
      // Metadata addresses stay refused whatever the host check says.
      await attack("proxy-metadata").run(context);
    } finally {
      await context.close();
    }
  }, 120_000);
});
