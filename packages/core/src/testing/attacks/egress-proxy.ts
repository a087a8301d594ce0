/**
 * Attacks on the egress proxy's judgement of where a connection goes: the machine the services
 * run on, reached through a name on the allow-list or a CIDR rule that happens to cover it, and
 * cloud metadata services. A decoy service listens on every address of the machine the tests run
 * on; a connection that reaches it is an escape, whatever status the proxy answered.
 */
import { networkInterfaces } from "node:os";
import { type Attack, type AttackContext, expectBlocked } from "./support.js";

/** The addresses of the machine the tests run on, as CONNECT authorities for `port`. */
function hostAuthorities(port: number): string[] {
  const authorities = new Set([`127.0.0.1:${port}`, `[::1]:${port}`, `localhost:${port}`]);
  for (const addresses of Object.values(networkInterfaces())) {
    for (const { address, family } of addresses ?? []) {
      if (address.includes("%")) continue;
      authorities.add(family === "IPv6" ? `[${address}]:${port}` : `${address}:${port}`);
    }
  }
  return [...authorities];
}

/** A bottle that tries `authorities` through the proxy (CONNECT and plain HTTP) and reports each status. */
async function tryThroughProxy(context: AttackContext, authorities: string[], allow: string[]) {
  const { observed, result } = await context.attack(
    String.raw`
      const authorities = ${JSON.stringify(authorities)};
      const statuses = {};
      for (const authority of authorities) {
        statuses["CONNECT " + authority] = (await viaProxy(authority)).status;
        if (proxy) {
          const text = await exchange(proxy.hostname, proxy.port,
            "GET http://" + authority + "/ HTTP/1.1\r\nHost: " + authority + "\r\nConnection: close\r\n\r\n");
          statuses["GET http://" + authority + "/"] = statusOf(text);
        }
      }
      // The services' own address, as the bottle sees it, with the decoy's port.
      for (const url of [base, proxy].filter(Boolean)) {
        const authority = url.hostname + ":" + ${JSON.stringify(String(context.decoy.port))};
        statuses["CONNECT " + authority] = (await viaProxy(authority)).status;
      }
      report({ statuses, proxy: Boolean(proxy) });
    `,
    { network: { mode: "allowlist", allow } },
  );
  return { statuses: observed.statuses as Record<string, number>, hasProxy: observed.proxy === true, result };
}

const hostByName: Attack = {
  id: "proxy-host-by-name",
  capability: "egress",
  title: "an allowed name that leads to the host (localhost) does not open the host to the bottle",
  async run(context) {
    const before = context.decoy.connections.length;
    const port = context.decoy.port;
    const { statuses } = await tryThroughProxy(context, [`localhost:${port}`], ["localhost"]);
    const reached = context.decoy.connections.slice(before);
    expectBlocked(
      reached.length === 0,
      `a service on the host was reached through the allowed name localhost (from ${reached.join(", ")}); statuses ${JSON.stringify(statuses)}`,
    );
    for (const [request, status] of Object.entries(statuses)) {
      expectBlocked(status !== 200, `${request} through the proxy was answered 200`);
    }
  },
};

const hostByCidr: Attack = {
  id: "proxy-host-by-cidr",
  capability: "egress",
  title: "a CIDR rule that covers the host's addresses does not open the host to the bottle",
  async run(context) {
    const before = context.decoy.connections.length;
    const { statuses } = await tryThroughProxy(context, hostAuthorities(context.decoy.port), [
      "0.0.0.0/0",
      "::/0",
    ]);
    const reached = context.decoy.connections.slice(before);
    expectBlocked(
      reached.length === 0,
      `a service on the host was reached under the rules 0.0.0.0/0 and ::/0 (from ${reached.join(", ")}); statuses ${JSON.stringify(statuses)}`,
    );
    for (const [request, status] of Object.entries(statuses)) {
      expectBlocked(status !== 200, `${request} through the proxy was answered 200`);
    }
  },
};

const metadata: Attack = {
  id: "proxy-metadata",
  capability: "egress",
  title: "cloud metadata addresses are refused whatever the allow-list says",
  async run(context) {
    const targets = [
      "169.254.169.254:80",
      "[fd00:ec2::254]:80",
      "100.100.100.200:80",
      "168.63.129.16:80",
      "[::ffff:169.254.169.254]:80",
    ];
    const { statuses, hasProxy } = await tryThroughProxy(context, targets, ["0.0.0.0/0", "::/0"]);
    expectBlocked(
      hasProxy,
      "the bottle has no HTTPS_PROXY in allowlist mode; this attack goes through the egress proxy",
    );
    for (const target of targets) {
      // Nothing listens at these addresses here, so a proxy that tried would answer 502 or time
      // out: only a refusal by policy (403) shows that it refused.
      for (const request of [`CONNECT ${target}`, `GET http://${target}/`]) {
        expectBlocked(
          statuses[request] === 403,
          `${request} through the proxy was answered ${statuses[request]}; the proxy must refuse it (403)`,
        );
      }
    }
  },
};

export const egressProxyAttacks: readonly Attack[] = [hostByName, hostByCidr, metadata];
