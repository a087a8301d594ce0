#!/usr/bin/env node
/**
 * What the host services cost, on loopback: the latency the API forwarder and the egress proxy
 * add to one small request, and the throughput of a 100 MB download through each, against the
 * same request made directly. Not a test; run it with `pnpm bench:egress` (which builds core
 * first) and read the JSON it prints. Everything listens on 127.0.0.1; every loop is bounded.
 *
 * Options: --requests N (default 400) small requests per path, --megabytes N (default 100).
 */
import { once } from "node:events";
import { Agent, createServer, request } from "node:http";
import { connect } from "node:net";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { startApiForwarder, startEgressProxy } from "../packages/core/dist/index.js";

const { values } = parseArgs({
  options: { requests: { type: "string", default: "400" }, megabytes: { type: "string", default: "100" } },
});
const requests = Math.min(Math.max(Number(values.requests), 10), 10_000);
const megabytes = Math.min(Math.max(Number(values.megabytes), 1), 1024);
const warmup = Math.min(50, requests);

// The upstream: a tiny JSON answer, and a large body streamed from one reused buffer.
const block = Buffer.alloc(64 * 1024, 120);
const upstream = createServer((req, res) => {
  req.resume();
  if (req.url === "/big") {
    const total = megabytes * 1024 * 1024;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": total });
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const piece = total - sent >= block.length ? block : block.subarray(0, total - sent);
        sent += piece.length;
        if (!res.write(piece)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end('{"type":"message","content":[]}');
});
upstream.listen(0, "127.0.0.1");
await once(upstream, "listening");
const upstreamPort = upstream.address().port;

const forwarder = await startApiForwarder({
  host: "127.0.0.1",
  upstream: `http://127.0.0.1:${upstreamPort}`,
  credential: { kind: "api-key", value: "bench-key" },
});
const proxy = await startEgressProxy({
  host: "127.0.0.1",
  allow: ["bench.test", "127.0.0.0/8"],
  resolve: async () => [{ address: "127.0.0.1", family: 4 }],
});
const proxyPort = proxy.port;

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

/** One request; resolves with the body length once it has all arrived. */
function fetchOnce({ port, path, headers = {}, socket }) {
  return new Promise((resolve, reject) => {
    const req = request(
      socket
        ? { createConnection: () => socket, path, headers }
        : { host: "127.0.0.1", port, path, headers, agent },
      (res) => {
        let bytes = 0;
        res.on("data", (chunk) => {
          bytes += chunk.length;
        });
        res.on("end", () => resolve(bytes));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** A CONNECT tunnel through the proxy, ready to carry HTTP. */
async function openTunnel() {
  const socket = connect(proxyPort, "127.0.0.1");
  socket.write(`CONNECT bench.test:${upstreamPort} HTTP/1.1\r\nHost: bench.test:${upstreamPort}\r\n\r\n`);
  const [chunk] = await once(socket, "data");
  if (!chunk.toString().startsWith("HTTP/1.1 200")) throw new Error(`CONNECT refused: ${chunk}`);
  return socket;
}

const paths = {
  direct: () => fetchOnce({ port: upstreamPort, path: "/small" }),
  // The baseline for a fresh tunnel per request: a fresh connection per request.
  "direct-new-connection": async () => {
    const socket = connect(upstreamPort, "127.0.0.1");
    await once(socket, "connect");
    await fetchOnce({ path: "/small", headers: { connection: "close" }, socket });
    socket.destroy();
  },
  forwarder: () =>
    fetchOnce({ port: forwarder.port, path: "/small", headers: { "x-api-key": "placeholder" } }),
  "proxy-http": () =>
    fetchOnce({
      port: proxyPort,
      path: `http://bench.test:${upstreamPort}/small`,
      headers: { host: `bench.test:${upstreamPort}` },
    }),
  // A fresh tunnel per request: CONNECT, the allow-list decision, then the request.
  "proxy-connect-new-tunnel": async () => {
    const socket = await openTunnel();
    await fetchOnce({ path: "/small", headers: { connection: "close" }, socket });
    socket.destroy();
  },
};

async function latency(run) {
  for (let i = 0; i < warmup; i++) await run();
  const samples = [];
  for (let i = 0; i < requests; i++) {
    const start = process.hrtime.bigint();
    await run();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  samples.sort((a, b) => a - b);
  const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
  const mean = samples.reduce((sum, value) => sum + value, 0) / samples.length;
  return { medianMs: round(at(0.5)), p90Ms: round(at(0.9)), meanMs: round(mean) };
}

async function throughput(run) {
  const start = process.hrtime.bigint();
  const bytes = await run();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (bytes !== megabytes * 1024 * 1024) throw new Error(`expected ${megabytes} MiB, got ${bytes} bytes`);
  return { seconds: round(seconds), mibPerSecond: round(megabytes / seconds) };
}

const round = (value) => Math.round(value * 1000) / 1000;

const results = {
  machine: { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model },
  note: "client, services and upstream share one Node process on loopback: compare paths, not absolute numbers",
  requests,
  latency: {},
  addedLatencyMedianMs: {},
  download: { megabytes },
};
for (const [name, run] of Object.entries(paths)) results.latency[name] = await latency(run);
const baselines = {
  forwarder: "direct",
  "proxy-http": "direct",
  "proxy-connect-new-tunnel": "direct-new-connection",
};
for (const [name, baseline] of Object.entries(baselines)) {
  results.addedLatencyMedianMs[name] = round(
    results.latency[name].medianMs - results.latency[baseline].medianMs,
  );
}
results.download.direct = await throughput(() => fetchOnce({ port: upstreamPort, path: "/big" }));
results.download.forwarder = await throughput(() => fetchOnce({ port: forwarder.port, path: "/big" }));
results.download["proxy-http"] = await throughput(() =>
  fetchOnce({
    port: proxyPort,
    path: `http://bench.test:${upstreamPort}/big`,
    headers: { host: `bench.test:${upstreamPort}` },
  }),
);
results.download["proxy-connect"] = await throughput(async () => {
  const socket = await openTunnel();
  const bytes = await fetchOnce({ path: "/big", headers: { connection: "close" }, socket });
  socket.destroy();
  return bytes;
});

agent.destroy();
await Promise.all([forwarder.close(), proxy.close()]);
upstream.closeAllConnections();
upstream.close();
console.log(JSON.stringify(results, null, 2));
