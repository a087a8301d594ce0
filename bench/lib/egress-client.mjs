/**
 * The far side of the egress benchmark, in a process of its own (forked by egress.bench.mjs): an
 * upstream server standing in for the internet, and a client standing in for the bottle. The
 * forwarder and the proxy run in the parent, as they run in claude-bottle's process, so a proxied
 * request crosses a process boundary twice, like the real thing. Everything is on 127.0.0.1 and
 * every loop is bounded.
 */
import { once } from "node:events";
import { Agent, createServer, request } from "node:http";
import { connect } from "node:net";
import { median, summary } from "./measure.mjs";

const block = Buffer.alloc(64 * 1024, 120);
let megabytes = 1;

// The upstream: a tiny JSON answer, and a large body streamed from one reused buffer.
const upstream = createServer((req, res) => {
  req.resume();
  if (req.url === "/big" || req.url === "/v1/messages?bench=big") {
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
process.send({ type: "ready", upstreamPort });

const [message] = await once(process, "message");
megabytes = message.megabytes;
const result = await measure(message);
upstream.closeAllConnections();
upstream.close();
process.send({ type: "result", result });
process.disconnect();

async function measure({ forwarderPort, proxyPort, relayPort, httpRelayPort, requests, runs }) {
  const target = `bench.test:${upstreamPort}`;

  /** One request; resolves with the body length once it has all arrived. */
  function fetchOnce(options) {
    return new Promise((resolve, reject) => {
      const req = request(options, (res) => {
        let bytes = 0;
        res.on("data", (chunk) => {
          bytes += chunk.length;
        });
        res.on("end", () => resolve(bytes));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  }

  /** A CONNECT tunnel through the proxy, ready to carry HTTP. */
  async function openTunnel() {
    const socket = connect(proxyPort, "127.0.0.1");
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    const [chunk] = await once(socket, "data");
    if (!chunk.toString().startsWith("HTTP/1.1 200")) throw new Error(`CONNECT refused: ${chunk}`);
    return socket;
  }

  const keepAlive = () => new Agent({ keepAlive: true, maxSockets: 1 });
  // An agent whose one kept-alive connection is a tunnel through the proxy (HTTPS to an allowed host).
  const tunnelAgent = () => {
    const agent = keepAlive();
    agent.createConnection = (_options, callback) => {
      openTunnel().then((socket) => callback(null, socket), callback);
    };
    return agent;
  };
  const agents = {
    direct: keepAlive(),
    relay: keepAlive(),
    "http-relay": keepAlive(),
    forwarder: keepAlive(),
    "proxy-http": keepAlive(),
    "proxy-connect": tunnelAgent(),
  };

  const get = {
    direct: (path) => fetchOnce({ host: "127.0.0.1", port: upstreamPort, path, agent: agents.direct }),
    // Reference: a bare TCP relay in the proxy's process (see startRelay in egress.bench.mjs).
    relay: (path) => fetchOnce({ host: "127.0.0.1", port: relayPort, path, agent: agents.relay }),
    // Reference: a bare HTTP relay on node:http (see startHttpRelay in egress.bench.mjs).
    "http-relay": (path) =>
      fetchOnce({ host: "127.0.0.1", port: httpRelayPort, path, agent: agents["http-relay"] }),
    // The forwarder passes on only Claude Code's routes: the size goes in the query.
    forwarder: (path) =>
      fetchOnce({
        host: "127.0.0.1",
        port: forwarderPort,
        method: "POST",
        path: `/v1/messages?bench=${path.slice(1)}`,
        headers: { "x-api-key": "bench-placeholder", "content-length": "0" },
        agent: agents.forwarder,
      }),
    "proxy-http": (path) =>
      fetchOnce({
        host: "127.0.0.1",
        port: proxyPort,
        path: `http://${target}${path}`,
        headers: { host: target },
        agent: agents["proxy-http"],
      }),
    "proxy-connect": (path) => fetchOnce({ path, headers: { host: target }, agent: agents["proxy-connect"] }),
    // A fresh connection (or tunnel: CONNECT, the allow-list decision, then the request) per request.
    "direct-new-connection": async (path) => {
      const socket = connect(upstreamPort, "127.0.0.1");
      await once(socket, "connect");
      const bytes = await fetchOnce({
        path,
        headers: { connection: "close" },
        createConnection: () => socket,
      });
      socket.destroy();
      return bytes;
    },
    "proxy-connect-new-tunnel": async (path) => {
      const socket = await openTunnel();
      const bytes = await fetchOnce({
        path,
        headers: { host: target, connection: "close" },
        createConnection: () => socket,
      });
      socket.destroy();
      return bytes;
    },
  };

  // Latency: `runs` runs (after one warm-up run) of `requests` rounds; each round sends one small
  // request down every path, in an order that rotates from round to round.
  const latencyPaths = Object.keys(get);
  const perRun = Object.fromEntries(latencyPaths.map((path) => [path, []]));
  for (let run = -1; run < runs; run++) {
    const samples = Object.fromEntries(latencyPaths.map((path) => [path, []]));
    for (let i = 0; i < requests; i++) {
      const shift = i % latencyPaths.length;
      for (const path of [...latencyPaths.slice(shift), ...latencyPaths.slice(0, shift)]) {
        const started = process.hrtime.bigint();
        await get[path]("/small");
        samples[path].push(Number(process.hrtime.bigint() - started) / 1e6);
      }
    }
    if (run >= 0) for (const path of latencyPaths) perRun[path].push(median(samples[path]));
  }
  const baselines = {
    relay: "direct",
    "http-relay": "direct",
    forwarder: "direct",
    "proxy-http": "direct",
    "proxy-connect": "direct",
    "proxy-connect-new-tunnel": "direct-new-connection",
  };
  const added = Object.fromEntries(
    Object.entries(baselines).map(([path, baseline]) => [
      path,
      {
        baseline,
        ...summary(
          perRun[path].map((ms, run) => ms - perRun[baseline][run]),
          3,
        ),
      },
    ]),
  );

  // Throughput: one download of `megabytes` MiB per path per run, interleaved.
  const downloadPaths = ["direct", "relay", "http-relay", "forwarder", "proxy-http", "proxy-connect"];
  const rates = Object.fromEntries(downloadPaths.map((path) => [path, []]));
  for (let run = -1; run < runs; run++) {
    const shift = ((run % downloadPaths.length) + downloadPaths.length) % downloadPaths.length;
    for (const path of [...downloadPaths.slice(shift), ...downloadPaths.slice(0, shift)]) {
      const started = process.hrtime.bigint();
      const bytes = await get[path]("/big");
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (bytes !== megabytes * 1024 * 1024)
        throw new Error(`${path}: expected ${megabytes} MiB, got ${bytes}`);
      if (run >= 0) rates[path].push(megabytes / seconds);
    }
  }
  const throughput = Object.fromEntries(downloadPaths.map((path) => [path, summary(rates[path])]));
  const share = Object.fromEntries(
    downloadPaths
      .filter((path) => path !== "direct")
      .map((path) => [path, summary(rates[path].map((rate, run) => (100 * rate) / rates.direct[run]))]),
  );

  for (const agent of Object.values(agents)) agent.destroy();
  return {
    requests,
    megabytes,
    latencyMs: Object.fromEntries(latencyPaths.map((path) => [path, summary(perRun[path], 3)])),
    addedLatencyMs: added,
    throughputMiBps: throughput,
    throughputPercentOfDirect: share,
    note: `latency: the median of each run's ${requests} requests, then the median and range of those over ${runs} runs`,
  };
}
