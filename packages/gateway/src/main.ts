/**
 * The gateway program: runs in a container of its own beside a bottle that has no network, started
 * and fed by the CLI (see protocol.ts for what goes over stdin/stdout, session.ts for one run's life).
 *
 * It starts the host services (serve.ts: the API forwarder with the real credential and, in
 * `allowlist` mode, the egress proxy) where nothing outside this container reaches them, and offers
 * each to the bottle as a unix socket in the volume the two share. The gateway's network is an
 * ordinary one: whatever leaves the bottle leaves from here, after the proxy's policy.
 *
 * Why unix sockets in a volume rather than a network between the two: the bottle then has no
 * network interface but loopback, so there is no address of any host, engine or container it could
 * even try; no network has to be created per run, no firewall rules are needed on any host, and it
 * works the same wherever the engine runs (a VM on Docker Desktop, another network namespace, a
 * remote host).
 *
 * Two ways to run: with no argument, a gateway of one run's own (`docker run -i --rm`, its session
 * on stdin and stdout, gone with the run); with `warm MINUTES`, a project's warm gateway (warm.ts),
 * which serves each run that attaches to it and stops once idle that long.
 *
 * This file is kept small: the services' code loads only once a configuration is in.
 */
import { meetingDir } from "./layout.js";
import { openSession } from "./session.js";

if (process.argv[2] === "warm") {
  // A file of its own beside this one (tsdown.config.ts), named at run time.
  const { serveWarm } = (await import(
    new URL("./warm.mjs", import.meta.url).href
  )) as typeof import("./warm.js");
  await serveWarm(Number(process.argv[3]));
} else {
  const session = openSession({
    input: process.stdin,
    send: (line) => process.stdout.write(`${line}\n`),
    dir: meetingDir,
  });
  process.on("SIGTERM", () => session.stop("signal"));
  process.on("SIGINT", () => session.stop("signal"));
  process.exitCode = await session.done;
  process.exit();
}
