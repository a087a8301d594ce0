// The Docker backend against the real engine, with the real agent image built by core's
// buildAgentImage. Commands are plain argv (sh, node); Claude Code itself is exercised elsewhere.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { chown, mkdtemp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { engineHostAddress } from "@claude-bottle/container-engine/testing";
import { BottleError, bottleLabels, type RunResult, runSpecSchema } from "@claude-bottle/core";
import { relayPath, relayProgram } from "@claude-bottle/gateway";
import { describe, expect, it } from "vitest";
import { docker } from "../src/index.js";
import {
  baseImage,
  baseOptions,
  containersNamed,
  engine,
  leftoversOf,
  running,
  sh,
  useDockerBackend,
  testUser as user,
} from "./support.js";

const { backend, bottle, start, scratch, prepared: preparedImage } = useDockerBackend();
// Runs with a gateway of their own, as every run had before warm gateways (and as runs that publish
// ports still have): what these tests check of it is still what happens to such runs.
const ownGateway = useDockerBackend({ warmGatewayMinutes: 0 });

/** Every process's argv on this machine (the bottle's processes included: they are host processes). */
async function allCommandLines(): Promise<string[][]> {
  const lines: string[][] = [];
  for (const pid of (await readdir("/proc")).filter((entry) => /^\d+$/.test(entry))) {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (raw) lines.push(raw.split("\0").filter(Boolean));
  }
  return lines;
}

/** The same, read synchronously: quick enough to catch a process in its first milliseconds. */
function commandLinesNow(): string[][] {
  const lines: string[][] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      lines.push(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean));
    } catch {
      // the process ended while we looked
    }
  }
  return lines;
}

describe("the docker backend runs a bottle (real engine)", () => {
  it("runs the command in the workspace as the given uid:gid; what it creates belongs to that user", async () => {
    // a comma and a space in the path: docker reads --mount as CSV
    const { spec, workspace } = await bottle(
      { command: sh('pwd > where; printf "made inside\\n" > made.txt; id -u > uid') },
      user,
      "my work, space",
    );
    expect(await backend.run(preparedImage(), spec)).toEqual({ exitCode: 0, deniedHosts: [] });

    const made = await stat(join(workspace, "made.txt"));
    expect({ uid: made.uid, gid: made.gid }).toEqual(user);
    expect(await readFile(join(workspace, "made.txt"), "utf8")).toBe("made inside\n");
    expect((await readFile(join(workspace, "where"), "utf8")).trim()).toBe(workspace);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("passes the command's exit code through", async () => {
    const { spec } = await bottle({ command: sh("exit 7") });
    expect(await backend.run(preparedImage(), spec)).toEqual({ exitCode: 7, deniedHosts: [] });
  });

  it("sets the environment, HOME at the home's target, and mounts extra folders as asked", async () => {
    const data = await mkdtemp(join(scratch(), "data-"));
    await writeFile(join(data, "input.txt"), "from the host");
    await chown(data, user.uid, user.gid);
    const { spec, workspace } = await bottle({
      env: { GREETING: "hello, bottle" },
      homeTarget: "/home/agent",
      mounts: [{ source: data, target: "/data", readOnly: true }],
      command: sh(
        'printf "%s|%s" "$GREETING" "$HOME" > env.txt; cp /data/input.txt .; ' +
          "touch /data/new 2> /dev/null; echo $? > write-status",
      ),
    });
    expect(await backend.run(preparedImage(), spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    expect(await readFile(join(workspace, "env.txt"), "utf8")).toBe("hello, bottle|/home/agent");
    expect(await readFile(join(workspace, "input.txt"), "utf8")).toBe("from the host");
    expect((await readFile(join(workspace, "write-status"), "utf8")).trim()).not.toBe("0");
    expect(await readdir(data)).toEqual(["input.txt"]);
  });

  it("fails with RUN_FAILED, not an exit code, when Docker cannot start the bottle, and cleans up", async () => {
    // Docker refuses memory limits below 6 MB before anything runs.
    const { spec } = await bottle({ resources: { memoryMiB: 1 } });
    const error = await backend.run(preparedImage(), spec).catch((e: unknown) => e);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    expect((error as BottleError).message).toContain(spec.name);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("keeps the home directory from one run to the next", async () => {
    const first = await bottle({ command: sh('echo "remembered $(date +%s%N)" > "$HOME/note"') });
    await backend.run(preparedImage(), first.spec);
    const second = runSpecSchema.parse({
      ...first.spec,
      name: `${first.spec.name}-again`,
      command: sh('cat "$HOME/note" > from-home'),
    });
    expect(await backend.run(preparedImage(), second)).toEqual({ exitCode: 0, deniedHosts: [] });
    const note = await readFile(join(first.home, "note"), "utf8");
    expect(note).toMatch(/^remembered \d+\n$/);
    expect(await readFile(join(first.workspace, "from-home"), "utf8")).toBe(note);
  });

  it("runs a bottle without a user as the non-root claude uid, marked as a sandbox for Claude Code", async () => {
    // The plain base image, as a user's own image would be: it sets no IS_SANDBOX of its own.
    const plain = await docker({ ...baseOptions, image: { kind: "existing" } }).prepare(baseImage);
    const claude = { uid: 10001, gid: 10001 };
    const { spec, workspace } = await bottle(
      { user: undefined, command: sh('id -u > uid; printf %s "$IS_SANDBOX" > sandbox') },
      claude,
    );
    expect(await backend.run(plain, spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await readFile(join(workspace, "uid"), "utf8")).trim()).toBe("10001");
    expect(await readFile(join(workspace, "sandbox"), "utf8")).toBe("1");
    expect((await stat(join(workspace, "uid"))).uid).toBe(10001);
  });

  it("runs uid 0 as root that owns root's files and nothing more: no capability, no privilege gain", async () => {
    const plain = await docker({ ...baseOptions, image: { kind: "existing" } }).prepare(baseImage);
    const { spec, workspace } = await bottle(
      {
        user: { uid: 0, gid: 0 },
        command: sh(
          'id -u > uid; printf %s "$IS_SANDBOX" > sandbox; grep -E "^(CapEff|CapPrm|NoNewPrivs):" /proc/self/status > status; chown 1:1 uid 2> /dev/null && echo chowned > escalated; echo x > /etc/x 2> /dev/null && echo wrote-etc >> escalated; true',
        ),
      },
      { uid: 0, gid: 0 },
    );
    expect(await backend.run(plain, spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await readFile(join(workspace, "uid"), "utf8")).trim()).toBe("0");
    expect(await readFile(join(workspace, "sandbox"), "utf8")).toBe("1");
    const status = await readFile(join(workspace, "status"), "utf8");
    expect(status).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(status).toMatch(/^CapPrm:\s+0000000000000000$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    // Without CAP_CHOWN it can't give a file away; the image's root filesystem stays read-only.
    expect((await stat(join(workspace, "uid"))).uid).toBe(0);
    expect(await readdir(workspace)).not.toContain("escalated");
  });

  it("gives the bottle the relay's file from the host to run, never to change, even as uid 0", async () => {
    const prepared = preparedImage();
    const written = await readFile(prepared.relayFile, "utf8");
    expect(written).toBe(relayProgram());
    // The agent, adversary, tries to change the program that the next bottle of the project runs first.
    const { spec, workspace } = await bottle(
      {
        user: { uid: 0, gid: 0 },
        command: sh(
          `for how in "echo x >" "rm -f" "touch"; do sh -c "$how ${relayPath}" 2> /dev/null && echo "$how" >> changed; done; ` +
            `mv ${relayPath} /tmp/relay 2> /dev/null && echo mv >> changed; mount | grep -c ${relayPath} > mounted; true`,
        ),
      },
      { uid: 0, gid: 0 },
    );
    expect(await backend.run(prepared, spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    expect(await readdir(workspace)).not.toContain("changed");
    expect((await readFile(join(workspace, "mounted"), "utf8")).trim()).toBe("1");
    expect(await readFile(prepared.relayFile, "utf8")).toBe(written);
  });

  it("reaches a server on this machine through $ANTHROPIC_BASE_URL, at the engine's address for it", async () => {
    const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
    const server = createServer((req, res) => {
      seen.push({ url: req.url ?? "", headers: req.headers });
      res.end("pong from the host");
    });
    // Everywhere: the gateway container reaches this machine at the engine's host address.
    server.listen(0, "0.0.0.0");
    await once(server, "listening");
    try {
      const { port } = server.address() as AddressInfo;
      const { spec, workspace } = await bottle({
        anthropicBaseUrl: `http://${await engineHostAddress(engine)}:${port}`,
        command: [
          "node",
          "-e",
          "fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', { method: 'POST', body: '{}' }).then((r) => r.text())" +
            ".then((t) => require('fs').writeFileSync('reply.txt', t))",
        ],
      });
      expect(await backend.run(preparedImage(), spec)).toEqual({ exitCode: 0, deniedHosts: [] });
      expect(await readFile(join(workspace, "reply.txt"), "utf8")).toBe("pong from the host");
      expect(seen.map((request) => request.url)).toEqual(["/v1/messages"]);
    } finally {
      server.close();
    }
  });

  it("a bottle that tells its gateway it is done early only cuts itself off; the run ends as its command does", async () => {
    const server = createServer((_req, res) => res.end("api"));
    server.listen(0, "0.0.0.0");
    await once(server, "listening");
    try {
      const { port } = server.address() as AddressInfo;
      // The agent, adversary, says "done" on the gateway's end socket (as the relay does when the
      // command has ended), then tries the API again and carries on.
      const script = [
        "const fs = require('fs'), net = require('net');",
        "const api = () => fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', { method: 'POST', body: '{}' }).then((r) => r.text(), () => 'refused');",
        "(async () => {",
        "  fs.writeFileSync('before', await api());",
        "  await new Promise((done) => net.connect('/run/claude-bottle/end.sock', done).on('error', done));",
        "  await new Promise((done) => setTimeout(done, 1500));",
        "  fs.writeFileSync('after', await api());",
        "  process.exit(7);",
        "})();",
      ].join("\n");
      const { spec, workspace } = await ownGateway.bottle({
        anthropicBaseUrl: `http://${await engineHostAddress(engine)}:${port}`,
        command: ["node", "-e", script],
      });
      expect(await ownGateway.backend.run(ownGateway.prepared(), spec)).toEqual({
        exitCode: 7,
        deniedHosts: [],
      });
      expect(await readFile(join(workspace, "before"), "utf8")).toBe("api");
      expect(await readFile(join(workspace, "after"), "utf8")).toBe("refused");
      expect(await leftoversOf(spec.name)).toEqual([]);
    } finally {
      server.close();
    }
  });

  it("fails the run, and leaves nothing, when its gateway is stopped from outside (docker stop)", async () => {
    const { spec } = await ownGateway.bottle({ command: ["sleep", "300"] });
    const { run } = ownGateway.start(spec);
    await running(`${spec.name}-gateway`);
    await running(spec.name);
    // SIGTERM, so the gateway closes in order and says so: still not a stop the run asked for.
    await engine.exec(["stop", "--time", "5", `${spec.name}-gateway`], "RUN_FAILED", "stopping the gateway");
    const error = await run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    expect((error as Error).message).toMatch(/gateway .* stopped unexpectedly/);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("fails before the command runs, with one line saying what to do, when a loopback baseUrl does not answer", async () => {
    // A port nothing listens on, on this machine's loopback.
    const server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    server.close();
    const { spec, workspace } = await bottle({
      anthropicBaseUrl: `http://127.0.0.1:${port}`,
      command: sh("touch ran"),
    });
    const error = await backend.run(preparedImage(), spec).catch((e: unknown) => e);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    expect((error as BottleError).message).toBe(
      `the gateway cannot reach anthropic.baseUrl at host.docker.internal:${port}`,
    );
    expect((error as BottleError).hint).toContain(
      `anthropic.baseUrl http://127.0.0.1:${port} is on this machine's loopback`,
    );
    expect(await readdir(workspace)).toEqual([]);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("keeps a bottle with network mode none off the network, but in reach of the API", async () => {
    const server = createServer((_req, res) => res.end("api"));
    server.listen(0, "0.0.0.0");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const apiUrl = `http://${await engineHostAddress(engine)}:${port}`;
    const probe = sh(
      // without a network the lookup waits for DNS that never answers; stop waiting after 5 s
      "timeout 5 getent hosts registry.npmjs.org > /dev/null; echo $? > dns; " +
        `node -e "fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', { method: 'POST', body: '{}' }).then(r => r.text()).then(t => require('fs').writeFileSync('api', t))"`,
    );
    try {
      const none = await bottle({
        network: { mode: "none", allow: [] },
        anthropicBaseUrl: apiUrl,
        command: probe,
      });
      const open = await bottle({
        network: { mode: "open", allow: [] },
        anthropicBaseUrl: apiUrl,
        command: probe,
      });
      await backend.run(preparedImage(), none.spec);
      await backend.run(preparedImage(), open.spec);
      expect((await readFile(join(none.workspace, "dns"), "utf8")).trim()).not.toBe("0");
      expect(await readFile(join(none.workspace, "api"), "utf8")).toBe("api");
      expect((await readFile(join(open.workspace, "dns"), "utf8")).trim()).toBe("0");
      expect(await readFile(join(open.workspace, "api"), "utf8")).toBe("api");
    } finally {
      server.close();
    }
  });
});

describe("an image the bottle's relay cannot run in (real engine)", () => {
  it("is refused before anything runs, with one line saying what the image lacks", async () => {
    // The base image without its node: the relay inside the bottle would have nothing to run on.
    const context = await mkdtemp(join(scratch(), "no-node-"));
    await writeFile(join(context, "Dockerfile"), `FROM ${baseImage}\nRUN rm -f "$(command -v node)"\n`);
    const tag = `claude-bottle-test-no-node:${randomBytes(4).toString("hex")}`;
    await engine.build({ tag, context });
    try {
      const backend = docker({ ...baseOptions, image: { kind: "existing" } });
      const error = await backend.prepare(tag).catch((e: unknown) => e);
      expect(BottleError.is(error) && error.code).toBe("PREPARE_FAILED");
      expect((error as BottleError).message).toBe(`the image ${tag} has no working \`node\` on its PATH`);
      expect((error as BottleError).hint).toContain("Node.js");
    } finally {
      await engine.removeImage(tag).catch(() => undefined);
    }
  });
});

describe("credentials and hardening (real engine)", () => {
  it("with credentials.passthrough, hands credentials over at run time without putting them on any command line", async () => {
    const secret = `sk-ant-test-${randomBytes(12).toString("hex")}`;
    const { spec, workspace } = await bottle({
      secrets: { ANTHROPIC_API_KEY: secret },
      passthroughCredentials: true,
      resources: { pids: 64, memoryMiB: 512, cpus: 1.5 },
      command: sh('while [ ! -e go ]; do sleep 0.1; done; printf %s "$ANTHROPIC_API_KEY" > key'),
    });
    const { run } = start(spec);
    let result: RunResult | undefined;
    try {
      const inspect = await running(spec.name);

      // not in the container's argv
      const config = inspect.Config as { Cmd: string[]; Env: string[]; User: string };
      expect(JSON.stringify([inspect.Path, inspect.Args, config.Cmd])).not.toContain(secret);
      // not in any process's argv on this machine, the docker CLI's included
      const commandLines = await allCommandLines();
      const dockerRun = commandLines.filter((argv) => argv.includes("run") && argv.includes(spec.name));
      expect(dockerRun.length).toBeGreaterThan(0);
      expect(dockerRun[0]).toContain("ANTHROPIC_API_KEY");
      expect(commandLines.filter((argv) => argv.join(" ").includes(secret))).toEqual([]);

      // hardened as the user would check with docker inspect
      const host = inspect.HostConfig as Record<string, unknown>;
      expect(host.CapDrop).toEqual(["ALL"]);
      expect(host.SecurityOpt).toContain("no-new-privileges");
      expect(host.PidsLimit).toBe(64);
      expect(host.Memory).toBe(512 * 1024 * 1024);
      expect(host.NanoCpus).toBe(1.5e9);
      expect(host.Init).toBe(true);
      expect(host.ReadonlyRootfs).toBe(true);
      expect(host.Privileged).toBe(false);
      expect(host.AutoRemove).toBe(true);
      expect(config.User).toBe(`${user.uid}:${user.gid}`);
      const mounts = inspect.Mounts as { Source: string; Destination: string }[];
      expect(mounts.map((mount) => mount.Destination).sort()).toEqual(
        ["/home/claude", "/run/claude-bottle", relayPath, workspace].sort(),
      );
      // the gateway's folder and the relay's file, read-only; and no network but loopback
      expect(mounts.find((mount) => mount.Destination === "/run/claude-bottle")).toMatchObject({ RW: false });
      expect(mounts.find((mount) => mount.Destination === relayPath)).toMatchObject({ RW: false });
      expect(host.NetworkMode).toBe("none");
      expect(JSON.stringify(inspect)).not.toContain("docker.sock");
      const labels = (inspect.Config as { Labels: Record<string, string> }).Labels;
      expect(labels[bottleLabels.role]).toBe("bottle");
      expect(labels[bottleLabels.backend]).toBe("docker");
      expect(labels[bottleLabels.workspace]).toBe(workspace);
    } finally {
      await writeFile(join(workspace, "go"), "");
      result = await run;
    }
    expect(result).toEqual({ exitCode: 0, deniedHosts: [] });
    expect(await readFile(join(workspace, "key"), "utf8")).toBe(secret);
  });
});

describe("stopping bottles (real engine)", () => {
  it("on abort, removes the container, its gateway and their volume before rejecting with ABORTED", async () => {
    const { spec } = await ownGateway.bottle({ command: sh("sleep 300") });
    const { run, controller } = ownGateway.start(spec);
    await running(spec.name);
    expect((await leftoversOf(spec.name)).sort()).toEqual(
      [spec.name, `${spec.name}-gateway`, `volume ${spec.name}-gateway`].sort(),
    );

    const started = Date.now();
    controller.abort();
    const error = await run.catch((e: unknown) => e);
    expect(BottleError.is(error) && error.code).toBe("ABORTED");
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await leftoversOf(spec.name)).toEqual([]);
    // the docker CLIs it started have exited too
    const left = (await allCommandLines()).filter((argv) => argv.includes(spec.name));
    expect(left).toEqual([]);
  });

  it("leaves nothing behind whenever the abort lands, even before the container exists", async () => {
    for (const delayMs of [0, 50, 250, 600, 1000]) {
      const { spec } = await bottle({ command: sh("sleep 300") });
      const { run, controller } = start(spec);
      await sleep(delayMs);
      controller.abort();
      const outcome = await run.then(
        (result: RunResult) => result,
        (e: unknown) => e,
      );
      expect(BottleError.is(outcome) && outcome.code, `abort after ${delayMs} ms`).toBe("ABORTED");
      // a container created after an early abort would show up within a moment
      await sleep(500);
      expect(await leftoversOf(spec.name), `abort after ${delayMs} ms`).toEqual([]);
    }
  });

  it("leaves nothing behind when the abort lands while docker is still creating the container", async () => {
    const { spec } = await bottle({ command: sh("sleep 30") });
    const since = Math.floor(Date.now() / 1000) - 1;
    const { run, controller } = start(spec);
    // abort the moment the docker CLI exists, before the engine has made the container
    while (!commandLinesNow().some((argv) => argv.includes("run") && argv.includes(spec.name)))
      await new Promise((resolve) => setImmediate(resolve));
    const abortedAtNs = BigInt(Date.now()) * 1_000_000n;
    controller.abort();
    const error = await run.catch((e: unknown) => e);
    expect(BottleError.is(error) && error.code).toBe("ABORTED");
    // well before the command would have ended on its own
    expect(Number(BigInt(Date.now()) * 1_000_000n - abortedAtNs) / 1e9).toBeLessThan(15);
    await sleep(500);
    expect(await leftoversOf(spec.name)).toEqual([]);

    // The engine's own record shows the abort did land before the container was created.
    const events = await engine.exec(
      [
        "events",
        ...["--since", String(since), "--until", String(Math.ceil(Date.now() / 1000))],
        ...[
          "--filter",
          "type=container",
          "--filter",
          `container=${spec.name}`,
          "--format",
          "{{.TimeNano}} {{.Action}}",
        ],
      ],
      "RUN_FAILED",
      "reading engine events",
    );
    const created = events
      .split("\n")
      .filter((line) => line.endsWith(" create"))
      .map((line) => BigInt(line.split(" ")[0]!));
    expect(created.every((at) => at > abortedAtNs)).toBe(true);
  });

  it("lists a running bottle for ps and removes it, gateway and volume included, on stop", async () => {
    const { spec, workspace } = await bottle({ command: sh("sleep 300") });
    const { run } = start(spec);
    await running(spec.name);

    const listed = (await backend.listBottles!()).find((info) => info.name === spec.name);
    expect(listed).toMatchObject({ name: spec.name, backend: "docker", workspace });
    expect(listed!.status).toMatch(/^Up /);
    expect(Math.abs(Date.parse(listed!.startedAt) - Date.now())).toBeLessThan(5 * 60_000);

    await backend.stopBottle!(spec.name);
    const result = await run;
    expect(result.exitCode).not.toBe(0);
    expect(await leftoversOf(spec.name)).toEqual([]);
    expect((await backend.listBottles!()).map((info) => info.name)).not.toContain(spec.name);
  });

  it("refuses to stop a container that is not a bottle", async () => {
    const name = `claude-bottle-test-other-${randomBytes(4).toString("hex")}`;
    await engine.exec(["create", "--name", name, baseImage, "true"], "RUN_FAILED", "creating");
    try {
      const error = await backend.stopBottle!(name).catch((e: unknown) => e);
      expect(BottleError.is(error) && error.code).toBe("USAGE");
      expect((error as BottleError).hint).toContain("claude-bottle ps");
      expect(await containersNamed(name)).toEqual([name]);
    } finally {
      await engine.removeContainer(name);
    }
  });
});
