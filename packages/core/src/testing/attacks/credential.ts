/**
 * The user's real credential never reaches anything the bottle can read: not its environment, not
 * any process's, not a file in its home, workspace or /tmp, and not any answer of the API
 * forwarder (its refusals, its errors, its response headers).
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Attack, expectBlocked } from "./support.js";

/** Every file under `dir` whose content holds `needle`. */
async function filesHolding(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if ((await readFile(path, "latin1").catch(() => "")).includes(needle)) found.push(path);
  }
  return found;
}

const keyInvisible: Attack = {
  id: "key-invisible",
  capability: "credentials",
  title: "the real credential appears in nothing the bottle can read, and still reaches the API",
  async run(context) {
    const from = context.api.requests.length;
    const { observed, workspace, home } = await context.attack(String.raw`
      const seen = [];
      const keep = (label, text) => seen.push("== " + label + "\n" + text);
      keep("env", JSON.stringify(process.env));
      for (const pid of fs.readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
        for (const file of ["environ", "cmdline"]) {
          try { keep("/proc/" + pid + "/" + file, fs.readFileSync("/proc/" + pid + "/" + file, "latin1")); } catch {}
        }
      }
      let budget = 64 * 1024 * 1024;
      const walk = (dir, depth) => {
        if (depth > 8 || budget <= 0) return;
        let entries = [];
        try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
        for (const entry of entries) {
          const path = dir.replace(/\/$/, "") + "/" + entry.name;
          if (entry.isDirectory()) walk(path, depth + 1);
          else if (entry.isFile()) {
            try {
              const size = fs.statSync(path).size;
              if (size > 4 * 1024 * 1024) continue;
              budget -= size;
              keep(path, fs.readFileSync(path, "latin1"));
            } catch {}
          }
        }
      };
      for (const dir of [process.env.HOME, "/tmp", process.cwd(), "/etc", "/run"]) if (dir) walk(dir, 0);
      // Everything the forwarder says, to requests it refuses and ones it passes on.
      const key = process.env.ANTHROPIC_API_KEY || "";
      const body = JSON.stringify({ model: "claude-test", max_tokens: 1, messages: [{ role: "user", content: "hi" }] });
      const ask = (method, path, headers) => exchange(base.hostname, base.port,
        method + " " + path + " HTTP/1.1\r\nHost: " + base.host + "\r\n" + headers +
        "Content-Type: application/json\r\nContent-Length: " + Buffer.byteLength(body) + "\r\nConnection: close\r\n\r\n" + body);
      for (const [method, path, headers] of [
        ["POST", "/v1/messages", "x-api-key: " + key + "\r\n"],
        ["POST", "/v1/messages", ""],
        ["POST", "/v1/messages", "x-api-key: wrong\r\n"],
        ["POST", "/v1/models", "x-api-key: " + key + "\r\n"],
        ["POST", "/v1/%2e%2e/x", "x-api-key: " + key + "\r\n"],
        ["POST", "/v1/messages/count_tokens", "x-api-key: " + key + "\r\n"],
      ]) keep("forwarder " + method + " " + path, await ask(method, path, headers));
      fs.writeFileSync("seen-by-the-bottle.txt", seen.join("\n"));
      report({ pieces: seen.length, placeholder: key });
    `);
    const seen = await readFile(join(workspace, "seen-by-the-bottle.txt"), "latin1");
    expectBlocked(
      (observed.pieces as number) > 10 && seen.includes("== env"),
      "the bottle's search read almost nothing; it cannot show that the credential is absent",
    );
    expectBlocked(
      !seen.includes(context.secret),
      `the bottle could read the real credential: ${seen
        .split("\n== ")
        .filter((piece) => piece.includes(context.secret))
        .map((piece) => piece.split("\n")[0])
        .join(", ")}`,
    );
    for (const dir of [workspace, home]) {
      const found = await filesHolding(dir, context.secret);
      expectBlocked(found.length === 0, `the real credential was written to ${found.join(", ")}`);
    }
    // The search is only worth something if the credential was in play: the API got it.
    const withKey = context.api.requests
      .slice(from)
      .filter((request) => request.headers["x-api-key"] === context.secret);
    expectBlocked(
      withKey.length > 0,
      "no request reached the API with the real credential; the bottle's requests must be sent with it",
    );
  },
};

export const credentialAttacks: readonly Attack[] = [keyInvisible];
