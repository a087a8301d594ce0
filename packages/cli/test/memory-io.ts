import { PassThrough, Writable } from "node:stream";
import type { Io } from "../src/io.js";

/** An Io whose output is collected in strings, for in-process CLI tests. */
export function memoryIo(options: { env?: NodeJS.ProcessEnv; cwd: string; tty?: boolean }) {
  const output = { stdout: "", stderr: "" };
  const sink = (key: "stdout" | "stderr") =>
    Object.assign(
      new Writable({
        write(chunk, _encoding, done) {
          output[key] += String(chunk);
          done();
        },
      }),
      { isTTY: options.tty ?? false, columns: 100 },
    );
  const io: Io = {
    stdout: sink("stdout"),
    stderr: sink("stderr"),
    stdin: Object.assign(new PassThrough(), { isTTY: options.tty ?? false }),
    env: options.env ?? {},
    cwd: options.cwd,
  };
  return { io, output };
}
