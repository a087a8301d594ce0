// The Podman backend on this user's real rootless Podman, with the real agent image. Commands are
// plain argv (sh, node); Claude Code itself runs in the CLI's end-to-end test.
import { once } from "node:events";
import { readFile, stat } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { gatewayNames } from "@claude-bottle/container-engine";
import { runsServedBy, warmGatewayOf } from "@claude-bottle/container-engine/testing";
import { BottleError } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import { initCandidates, podman, systemPodmanHost } from "../src/index.js";
import {
  baseOptions,
  engine,
  leftoversOf,
  running,
  sh,
  testUser,
  until,
  usePodmanBackend,
} from "./support.js";

const { backend, bottle, start, prepared } = usePodmanBackend();
// Runs with a gateway of their own (warmGatewayMinutes 0), as runs that publish ports still have.
const ownGateway = usePodmanBackend({ warmGatewayMinutes: 0 });

describe("the podman backend runs a bottle (rootless Podman)", () => {
  it("says it is available, with the version, as the user the tests run as", async () => {
    const availability = await backend.checkAvailability();
    expect(availability).toMatchObject({ available: true, version: expect.stringMatching(/^Podman \d/) });
  });

  it("runs the command in the workspace as the invoking user, whose files it writes, hardened", async () => {
    const { spec, workspace } = await bottle({
      command: sh(
        [
          'pwd > where; id -u > uid; printf "made inside\\n" > made.txt',
          "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status > status",
          "touch /not-here 2> rootfs || true",
          // Interfaces: loopback only, with no network of its own.
          "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > interfaces",
          "exit 7",
        ].join("; "),
      ),
    });
    expect(await backend.run(prepared(), spec)).toEqual({ exitCode: 7, deniedHosts: [] });
    expect((await readFile(join(workspace, "where"), "utf8")).trim()).toBe(workspace);
    expect((await readFile(join(workspace, "uid"), "utf8")).trim()).toBe(String(testUser.uid));
    const made = await stat(join(workspace, "made.txt"));
    expect({ uid: made.uid, gid: made.gid }).toEqual(testUser);
    expect(await readFile(join(workspace, "status"), "utf8")).toMatch(
      /CapEff:\s+0000000000000000\nNoNewPrivs:\s+1/,
    );
    expect(await readFile(join(workspace, "rootfs"), "utf8")).toMatch(/Read-only file system/);
    expect((await readFile(join(workspace, "interfaces"), "utf8")).trim()).toBe("lo");
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("reaches nothing by address: the host, through the name Podman gives it, is unreachable", async () => {
    const { spec, workspace } = await bottle({
      command: [
        "node",
        "-e",
        `const net = require("net"), fs = require("fs");
         const s = net.connect({ host: "192.0.2.2", port: 22, timeout: 3000 });
         const done = (what) => { fs.writeFileSync("outcome", what); process.exit(0); };
         s.on("connect", () => done("connected")); s.on("timeout", () => done("timeout"));
         s.on("error", (e) => done(e.code));`,
      ],
    });
    expect((await backend.run(prepared(), spec)).exitCode).toBe(0);
    expect(await readFile(join(workspace, "outcome"), "utf8")).toMatch(/ENETUNREACH|EHOSTUNREACH|timeout/);
  });

  it("refuses to run the bottle as another user than the invoking one, before anything starts", async () => {
    const { spec } = await bottle({ user: { uid: testUser.uid + 1, gid: testUser.gid } });
    const error = await backend.run(prepared(), spec).catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("INVALID_CONFIG");
    expect((error as Error).message).toContain(`runs the bottle as you (${testUser.uid}:${testUser.gid})`);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("on abort (Ctrl-C, SIGTERM) removes the bottle, its gateway and their volume, and says it was cancelled", async () => {
    const { spec } = await bottle({ command: ["sleep", "300"] });
    const { run, controller } = start(spec);
    await running(spec.name);
    controller.abort();
    const error = await run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("ABORTED");
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("lists a running bottle for ps, and stop removes it with its gateway and volume", async () => {
    const { spec, workspace } = await bottle({ command: ["sleep", "300"] });
    const { run } = start(spec);
    await running(spec.name);
    const listed = await until("the bottle in ps", async () =>
      (await backend.listBottles!()).find((info) => info.name === spec.name),
    );
    expect(listed).toMatchObject({ backend: "podman", workspace });
    expect(await backend.nameInUse!(spec.name)).toContain(spec.name);
    await backend.stopBottle!(spec.name);
    // The run ends once its bottle is gone; what it reports then does not matter here.
    await run.catch(() => undefined);
    expect(await leftoversOf(spec.name)).toEqual([]);
    expect((await backend.listBottles!()).map((info) => info.name)).not.toContain(spec.name);
  });

  it("fails the run with the reason when the project's warm gateway dies, and leaves nothing behind", async () => {
    const { spec, workspace } = await bottle({ command: ["sleep", "300"] });
    const { run } = start(spec);
    await running(spec.name);
    const gateway = await until("the project's warm gateway", () => warmGatewayOf(workspace, engine));
    await until("the run in the gateway", async () =>
      (await runsServedBy(gateway, engine)).length === 1 ? true : undefined,
    );
    await engine.removeContainer(gateway);
    const error = await run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    expect((error as Error).message).toMatch(/gateway .* stopped unexpectedly/);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("fails the run with the reason when a gateway of the run's own dies, and leaves nothing behind", async () => {
    const { spec } = await ownGateway.bottle({ command: ["sleep", "300"] });
    const { run } = ownGateway.start(spec);
    await running(gatewayNames(spec.name).container);
    await running(spec.name);
    await engine.removeContainer(gatewayNames(spec.name).container);
    const error = await run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    expect((error as Error).message).toMatch(/gateway/);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("opens one port of this machine to the bottle (--allow-host-port) as its localhost, and no other", async () => {
    const service = createServer((socket) => socket.end("hello from the host\n"));
    service.listen(0, "0.0.0.0");
    await once(service, "listening");
    const port = (service.address() as AddressInfo).port;
    try {
      const { spec, workspace } = await bottle({
        network: { mode: "allowlist", hostPorts: [port] },
        command: [
          "node",
          "-e",
          `const net = require("net"), fs = require("fs");
           const ask = (p) => new Promise((done) => { let text = "";
             const s = net.connect({ host: "127.0.0.1", port: p, timeout: 5000 });
             s.on("data", (d) => (text += d)); s.on("end", () => done(text.trim()));
             s.on("timeout", () => done("timeout")); s.on("error", (e) => done(e.code)); });
           (async () => fs.writeFileSync("answers", JSON.stringify([await ask(${port}), await ask(${port + 1})])))();`,
        ],
      });
      expect((await backend.run(prepared(), spec)).exitCode).toBe(0);
      const [allowed, other] = JSON.parse(await readFile(join(workspace, "answers"), "utf8"));
      expect(allowed).toBe("hello from the host");
      expect(other).not.toBe("hello from the host");
    } finally {
      service.close();
    }
  });

  it("publishes a server the agent starts on a port of this machine's 127.0.0.1 (--publish)", async () => {
    const probe = createServer().listen(0, "127.0.0.1");
    await once(probe, "listening");
    const hostPort = (probe.address() as AddressInfo).port;
    await new Promise((done) => probe.close(done));
    const { spec } = await bottle({
      network: { mode: "allowlist", publish: [{ port: 8123, hostPort }] },
      command: [
        "node",
        "-e",
        `require("http").createServer((q, r) => r.end("served from the bottle")).listen(8123, "127.0.0.1");
         setTimeout(() => process.exit(0), 120000);`,
      ],
    });
    const { run, controller } = start(spec);
    const body = await until("the published port to answer", async () => {
      const response = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => undefined);
      return response?.ok ? await response.text() : undefined;
    });
    expect(body).toBe("served from the bottle");
    controller.abort();
    await run.catch(() => undefined);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("lists and stops a bottle also where no new one could start now (/dev/net/tun closed since)", async () => {
    const { spec } = await bottle({ command: ["sleep", "300"] });
    const { run } = start(spec);
    await running(spec.name);
    const closed = podman({
      ...baseOptions,
      host: { ...systemPodmanHost(), canReadWrite: async () => false },
    });
    expect((await closed.checkAvailability()).available).toBe(false);
    await until("the bottle in ps", async () =>
      (await closed.listBottles!()).find((info) => info.name === spec.name),
    );
    await closed.stopBottle!(spec.name);
    await run.catch(() => undefined);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });

  it("runs with a static tini where catatonit is missing", async () => {
    const machine = systemPodmanHost();
    // A machine without catatonit anywhere: Podman's own init and every other catatonit are hidden.
    const withoutCatatonit = {
      ...machine,
      exists: async (path: string) => !path.includes("catatonit") && (await machine.exists(path)),
    };
    const stand = await (async () => {
      for (const path of initCandidates) if (await withoutCatatonit.exists(path)) return path;
      return undefined;
    })();
    // The test machine has one (Debian's tini package, which Docker's brings, ships tini-static).
    expect(stand, `none of ${initCandidates.join(", ")} on this machine`).toMatch(/tini-static$/);
    const backendWithTini = podman({ ...baseOptions, host: withoutCatatonit });
    const { spec, workspace } = await bottle({
      command: sh("tr '\\0' ' ' < /proc/1/cmdline > init; wc -c < /run/podman-init > init-size"),
    });
    expect((await backendWithTini.run(prepared(), spec)).exitCode).toBe(0);
    // Podman mounts the init it is given as /run/podman-init, process 1, with the command after --,
    // here the relay's Perl starter, which the bundled image runs before the command,
    expect(await readFile(join(workspace, "init"), "utf8")).toMatch(/^\/run\/podman-init -- perl -e /);
    // and it is tini, not catatonit.
    expect(Number(await readFile(join(workspace, "init-size"), "utf8"))).toBe((await stat(stand!)).size);
    expect(await leftoversOf(spec.name)).toEqual([]);
  });
});
