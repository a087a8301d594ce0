/**
 * What the CLI runs in a project's warm gateway for each run (`docker exec -i GATEWAY node
 * …/attach.mjs`): it joins its stdin and stdout to the gateway's control socket, so that the run
 * speaks to the warm gateway exactly as to a gateway of its own (protocol.ts): the configuration
 * with the credential goes in on stdin (never argv or env: `docker inspect` of the exec shows
 * neither), messages and denials come out on stdout, and the end of stdin (the CLI closed it, or
 * died) ends the run's session.
 *
 * Exits 0 once the gateway has closed the session; 75 (EX_TEMPFAIL) when the gateway takes no runs
 * (it is stopping after being idle, or did not start listening within a few seconds), so that the
 * CLI starts a new gateway and attaches again.
 */
import { connect } from "node:net";
import { controlSocket } from "./layout.js";

/** How long to keep trying while the gateway starts (its container is up before Node listens). */
const patience = 5000;
const started = Date.now();

function attach(): void {
  const socket = connect({ path: controlSocket, allowHalfOpen: true });
  socket.once("connect", () => {
    socket.off("error", retry);
    socket.on("error", () => process.exit(0));
    process.stdin.pipe(socket);
    socket.pipe(process.stdout);
    socket.on("close", () => process.exit(0));
  });
  const retry = (error: Error) => {
    socket.destroy();
    if (Date.now() - started < patience) setTimeout(attach, 20);
    else {
      process.stderr.write(`claude-bottle: the warm gateway takes no runs: ${error.message}\n`);
      process.exit(75);
    }
  };
  socket.once("error", retry);
}

attach();
