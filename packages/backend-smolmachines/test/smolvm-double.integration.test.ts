// The smolvm TEST DOUBLE itself: it must reject what the real CLI rejects (shared docs/smolvm.md),
// or the tests that use it would pass against argv that real smolvm refuses.
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { doubleDir, tempDir } from "./support.js";

let dir: string;
let sidecar: string;
const smolvm = (...args: string[]) => smolvmWith({}, ...args);
const smolvmWith = (env: Record<string, string>, ...args: string[]) =>
  execa(join(doubleDir, "smolvm"), args, {
    reject: false,
    env: { SMOLVM_DOUBLE_STATE: join(dir, "state"), ...env },
  });

beforeAll(async () => {
  dir = await tempDir("double");
  sidecar = join(dir, "x.smolmachine.smolmachine");
  await writeFile(
    sidecar,
    JSON.stringify({
      writtenBy: "smolvm test double",
      configDigest: `sha256:${"0".repeat(64)}`,
      layers: [`sha256:${"1".repeat(64)}`],
    }),
  );
  for (const name of ["a", "b", "c", "d", "e"]) await mkdir(join(dir, name));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the smolvm test double", () => {
  it("rejects a pack --output that names the sidecar, and archives as --image", async () => {
    const sidecarOutput = await smolvm(
      "pack",
      "create",
      "--image",
      "localhost:5000/a:b",
      "--output",
      join(dir, "o.smolmachine"),
    );
    expect(sidecarOutput).toMatchObject({
      exitCode: 1,
      stderr: expect.stringMatching(/^Error: --output names the stub/),
    });
    const archive = await smolvm("pack", "create", "--image", "/tmp/image.tar", "--output", join(dir, "o"));
    expect(archive).toMatchObject({ exitCode: 1, stderr: expect.stringContaining("registry reference") });
  });

  it("has no -n on exec, no machine ls, and no --from with an allow-list on machine run", async () => {
    expect(await smolvm("machine", "exec", "-n", "m", "--", "true")).toMatchObject({
      exitCode: 2,
      stderr: "Error: unexpected argument '-n' found",
    });
    expect(await smolvm("machine", "ls")).toMatchObject({ exitCode: 2 });
    expect(
      await smolvm("machine", "run", "--from", sidecar, "--allow-host", "example.com", "--", "true"),
    ).toMatchObject({
      exitCode: 2,
      stderr: expect.stringContaining("'--from <FROM>' cannot be used with '--allow-host <HOST>'"),
    });
  });

  it("mounts absolute directories only", async () => {
    await writeFile(join(dir, "file"), "");
    expect(
      await smolvm("machine", "create", "--name", "f", "--from", sidecar, "-v", `${join(dir, "file")}:/f`),
    ).toMatchObject({
      exitCode: 1,
      stderr: expect.stringContaining("only directories"),
    });
    expect(
      await smolvm("machine", "create", "--name", "r", "--from", sidecar, "-v", `${join(dir, "a")}:relative`),
    ).toMatchObject({
      exitCode: 1,
      stderr: expect.stringContaining("must be absolute"),
    });
  });

  it("accepts more than 4 mounts at create and fails at start with no more IRQs, as smolvm does", async () => {
    const mounts = ["a", "b", "c", "d", "e"].flatMap((name) => ["-v", `${join(dir, name)}:/${name}`]);
    expect(await smolvm("machine", "create", "--name", "five", "--from", sidecar, ...mounts)).toMatchObject({
      exitCode: 0,
    });
    expect(await smolvm("machine", "start", "--name", "five")).toMatchObject({
      exitCode: 1,
      stderr: expect.stringContaining("no more IRQs"),
    });
    expect(await smolvm("machine", "exec", "--name", "five", "--", "true")).toMatchObject({
      exitCode: 1,
      stderr: "Error: machine 'five' is not running",
    });
    expect(await smolvm("machine", "delete", "--name", "five", "-f")).toMatchObject({ exitCode: 0 });
    expect(await smolvm("machine", "delete", "--name", "five", "-f")).toMatchObject({
      exitCode: 1,
      stderr: "Error: machine 'five' not found",
    });
  });

  it("binds credentials as smolvm does: from 1.18.2, exact DNS names inside the allow-list, and no plain key by -e", async () => {
    const create = (name: string, ...flags: string[]) =>
      smolvm("machine", "create", "--name", name, "--from", sidecar, ...flags);
    expect(
      await smolvmWith(
        { SMOLVM_DOUBLE_VERSION: "1.17.0" },
        "machine",
        "create",
        "--name",
        "old",
        "--from",
        sidecar,
        "--credential",
        "k=KEY@api.example.com",
      ),
    ).toMatchObject({ exitCode: 2, stderr: "Error: unexpected argument '--credential' found" });
    for (const host of ["*.example.com", "203.0.113.7", "API.example.com", "api.example.com:443"]) {
      expect(await create("bad", "--credential", `k=KEY@${host}`)).toMatchObject({
        exitCode: 1,
        stderr: expect.stringContaining("must be an exact lowercase DNS name"),
      });
    }
    expect(
      await create("outside", "--allow-host", "example.org", "--credential", "k=KEY@api.example.com"),
    ).toMatchObject({
      exitCode: 1,
      stderr: expect.stringContaining("is not reachable under the machine's network allow_hosts"),
    });
    expect(
      await create("inside", "--allow-host", "example.com", "--credential", "k=KEY@api.example.com"),
    ).toMatchObject({ exitCode: 0 });
    // While --credential exists, the double refuses an Anthropic key handed over in plain text.
    const plain = await execa(
      join(doubleDir, "smolvm"),
      ["machine", "create", "--name", "plain", "--from", sidecar, "-e", "ANTHROPIC_API_KEY"],
      { reject: false, env: { SMOLVM_DOUBLE_STATE: join(dir, "state"), ANTHROPIC_API_KEY: "sk-ant-x" } },
    );
    expect(plain).toMatchObject({
      exitCode: 1,
      stderr: expect.stringMatching(/^Error: TEST DOUBLE: ANTHROPIC_API_KEY would enter the guest/),
    });
  });
});
