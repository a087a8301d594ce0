/**
 * A project's warm gateway: one container that outlives the runs it serves, so that a run only
 * attaches to it (`docker exec`, about 50 ms beside the bottle's start) instead of starting and
 * removing a container with a network of its own (about 400 ms, most of a warm run's cost).
 *
 * What it holds between runs is code and nothing else. Each run attaches through attach.ts with its
 * own configuration (credential, placeholder, policy) and gets its own services (the forwarder and
 * the proxy, session.ts) with their own sockets in `runs/<run id>/`; when the run ends they close,
 * the folder goes, and the gateway keeps no credential and no policy of it. Runs of one gateway share
 * nothing but this process, so a run's bottle can use only its own run's services: another run's
 * folder can be neither listed nor guessed (layout.ts's `runsDir`), and its forwarder takes only its
 * own placeholder. The CLI keys the gateway by project (container-engine's warm-gateway.ts), so a
 * bottle of one project never meets another project's gateway at all.
 *
 * It stops on its own once no run has been attached for `idleMinutes`, and when stopped from
 * outside (`claude-bottle stop`, `docker rm -f`), which ends every run still attached.
 */
import { chmod, mkdir, readdir, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { controlSocket, meetingDir, runDir, runIdPattern, runsDir } from "./layout.js";
import type { GatewayMessage } from "./protocol.js";
import { firstLineOf, loadServices, openSession, type Session } from "./session.js";

export async function serveWarm(idleMinutes: number): Promise<void> {
  // What an earlier gateway of this project left in the volume: no run of it is attached any more.
  for (const name of await readdir(meetingDir).catch(() => []))
    await rm(join(meetingDir, name), { recursive: true, force: true });
  const runs = join(meetingDir, runsDir);
  await mkdir(runs, { recursive: true });
  await chmod(runs, 0o311);

  const sessions = new Set<Session>();
  let pending = 0;
  let idle: NodeJS.Timeout | undefined;
  const idleMs = (Number.isFinite(idleMinutes) && idleMinutes > 0 ? idleMinutes : 10) * 60_000;
  const armIdle = () => {
    clearTimeout(idle);
    if (sessions.size > 0 || pending > 0) return;
    // A connection still in the kernel's queue when this fires finds the gateway gone; attach.ts then
    // exits so that the CLI starts a new one.
    idle = setTimeout(() => process.exit(0), idleMs);
  };

  const attach = async (connection: Socket) => {
    clearTimeout(idle);
    pending++;
    const send = (line: string) => {
      if (connection.writable) connection.write(`${line}\n`);
    };
    const fail = (message: string) =>
      send(JSON.stringify({ gateway: "failed", message } satisfies GatewayMessage));
    let session: Session | undefined;
    try {
      connection.on("error", () => connection.destroy());
      const line = await firstLineOf(connection);
      if (line === undefined) return;
      const runId = runIdOf(line);
      if (runId === undefined) {
        fail("the run's id is missing or malformed");
        return;
      }
      const dir = join(meetingDir, runDir(runId));
      // A run id is new for every run: one that exists already is refused rather than shared.
      await mkdir(dir, { mode: 0o755 });
      // The session removes the folder before it says "closed" (session.ts).
      session = openSession({ input: connection, send, dir, firstLine: line, removeDir: true });
      sessions.add(session);
      pending--;
      await session.done;
    } catch (error) {
      fail(`the warm gateway could not take the run: ${(error as Error).message}`);
    } finally {
      if (session) sessions.delete(session);
      else pending--;
      connection.end();
      armIdle();
    }
  };

  // Half-open: the CLI's end of input (the run is over) must still let "closed" come back.
  const server = createServer({ allowHalfOpen: true }, (connection) => void attach(connection));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(controlSocket, () => resolve());
  });
  armIdle();
  // Runs come while their bottles start: the services' code is loaded now, once (session.ts).
  loadServices().catch(() => {});

  const stopAll = async () => {
    server.close();
    for (const session of sessions) session.stop("signal");
    await Promise.all([...sessions].map((session) => session.done));
    // Let the "closed" lines reach the CLIs before the container goes.
    setTimeout(() => process.exit(0), 100);
  };
  process.on("SIGTERM", () => void stopAll());
  process.on("SIGINT", () => void stopAll());
}

/** The run id in a configuration line, if it has a well-formed one (the services check the rest). */
function runIdOf(line: string): string | undefined {
  try {
    const runId = (JSON.parse(line) as { runId?: unknown }).runId;
    return typeof runId === "string" && runIdPattern.test(runId) ? runId : undefined;
  } catch {
    return undefined;
  }
}
