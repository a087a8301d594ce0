#!/usr/bin/env node
/**
 * What the host services cost, on loopback: the latency the API forwarder and the egress proxy
 * add to a small request, and the throughput of a large download through each, against the same
 * request made directly. The forwarder and proxy run in this process, as they do in claude-bottle's;
 * the upstream server and the client run in a child process (lib/egress-client.mjs).
 *
 * Part of the benchmark harness (bench/run.mjs); standalone, `pnpm bench:egress` builds core and
 * prints the JSON. Everything listens on 127.0.0.1; every loop is bounded.
 *
 * Options: --requests N (default 400) small requests per path and run, --megabytes N (default 100)
 * per download, --runs N (default 5).
 */
import { fork } from "node:child_process";
import { once } from "node:events";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, createServer } from "node:net";
import { parseArgs } from "node:util";
import { startApiForwarder, startEgressProxy } from "../packages/gateway/dist/services.js";

export async function measureEgress({ requests, megabytes, runs }) {
  const client = fork(new URL("./lib/egress-client.mjs", import.meta.url), [], { stdio: "inherit" });
  const exited = once(client, "exit");
  let forwarder;
  let proxy;
  let relay;
  let httpRelay;
  try {
    const [ready] = await once(client, "message");
    forwarder = await startApiForwarder({
      host: "127.0.0.1",
      upstream: `http://127.0.0.1:${ready.upstreamPort}`,
      credential: { kind: "api-key", value: "bench-key" },
      placeholder: "bench-placeholder",
    });
    proxy = await startEgressProxy({
      host: "127.0.0.1",
      allow: ["bench.test", "127.0.0.0/8"],
      resolve: async () => [{ address: "127.0.0.1", family: 4 }],
      // The upstream stands in for a host elsewhere; here it is on loopback, which the proxy
      // would otherwise refuse as the host's own address.
      isHostLocal: () => false,
    });
    relay = await startRelay(ready.upstreamPort);
    httpRelay = await startHttpRelay(ready.upstreamPort);
    client.send({
      forwarderPort: forwarder.port,
      proxyPort: proxy.port,
      relayPort: relay.address().port,
      httpRelayPort: httpRelay.address().port,
      requests,
      megabytes,
      runs,
    });
    const [answer] = await Promise.race([
      once(client, "message"),
      exited.then(([code]) => Promise.reject(new Error(`the egress client exited ${code}`))),
    ]);
    return answer.result;
  } finally {
    relay?.close();
    httpRelay?.closeAllConnections();
    httpRelay?.close();
    await Promise.all([forwarder?.close(), proxy?.close()]);
    if (client.exitCode === null) client.kill();
  }
}

/**
 * The least any relay in this process can cost: a bare TCP pipe to the upstream, no HTTP, no
 * decisions. The proxy's CONNECT tunnel is this plus the CONNECT exchange, so it is the reference
 * for what relaying through a Node process costs at all.
 */
async function startRelay(upstreamPort) {
  const relay = createServer((socket) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    socket.pipe(upstream).pipe(socket);
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  relay.listen(0, "127.0.0.1");
  await once(relay, "listening");
  return relay;
}

/**
 * The least an HTTP-level relay in this process can cost: each request re-sent to the upstream
 * with node:http and the answer piped back, no header rules, no decisions. The reference for the
 * API forwarder and the proxy's plain-HTTP path, which both work at this level.
 */
async function startHttpRelay(upstreamPort) {
  const relay = createHttpServer((req, res) => {
    const outgoing = httpRequest(
      { host: "127.0.0.1", port: upstreamPort, path: req.url, method: req.method, headers: req.headers },
      (reply) => {
        res.writeHead(reply.statusCode, reply.headers);
        reply.pipe(res);
      },
    );
    outgoing.on("error", () => res.destroy());
    req.pipe(outgoing);
  });
  relay.listen(0, "127.0.0.1");
  await once(relay, "listening");
  return relay;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      requests: { type: "string", default: "400" },
      megabytes: { type: "string", default: "100" },
      runs: { type: "string", default: "5" },
    },
  });
  const bounded = (value, min, max) => Math.min(Math.max(Number(value) || min, min), max);
  const result = await measureEgress({
    requests: bounded(values.requests, 10, 10_000),
    megabytes: bounded(values.megabytes, 1, 1024),
    runs: bounded(values.runs, 1, 50),
  });
  console.log(JSON.stringify(result, null, 2));
}
