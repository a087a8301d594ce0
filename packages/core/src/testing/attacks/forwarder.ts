/**
 * Attacks on the API forwarder, the one component that holds the user's real credential: using it
 * as an open relay, smuggling a request past it in a body it does not frame, and reaching API
 * paths and methods beyond the ones Claude Code needs.
 */
import type { RecordedRequest } from "../anthropic-api-double.js";
import { type Attack, type AttackContext, expectBlocked } from "./support.js";

/** A Messages request as the bottle would send it, with `headers` and a JSON body. */
const messagesRequest = String.raw`
const body = JSON.stringify({ model: "claude-test", max_tokens: 1, messages: [{ role: "user", content: "hi" }] });
const post = (path, headers) =>
  "POST " + path + " HTTP/1.1\r\nHost: " + base.host + "\r\nContent-Type: application/json\r\n" +
  "anthropic-version: 2023-06-01\r\n" + headers + "Content-Length: " + Buffer.byteLength(body) + "\r\nConnection: close\r\n\r\n" + body;
const placeholderHeader = process.env.ANTHROPIC_API_KEY ? "x-api-key: " + process.env.ANTHROPIC_API_KEY + "\r\n"
  : "authorization: Bearer " + (process.env.ANTHROPIC_AUTH_TOKEN || process.env.CLAUDE_CODE_OAUTH_TOKEN) + "\r\n";
`;

/** Requests the double received since `from`, beyond the ones Claude Code's own routes explain. */
function since(context: AttackContext, from: number): RecordedRequest[] {
  return context.api.requests.slice(from);
}

function describeRequests(requests: readonly RecordedRequest[]): string {
  return requests.map((request) => `${request.method} ${request.url}`).join(", ") || "none";
}

const openRelay: Attack = {
  id: "forwarder-open-relay",
  capability: "credentials",
  title: "the API forwarder passes nothing on without this run's placeholder credential",
  async run(context) {
    const from = context.api.requests.length;
    const { observed } = await context.attack(String.raw`${messagesRequest}
      const attempts = {
        "no credential": "",
        "the old fixed placeholder": "x-api-key: claude-bottle-placeholder-api-key\r\n",
        "a guessed key": "x-api-key: sk-ant-api03-guess\r\n",
        "a bearer token of its own": "authorization: Bearer sk-ant-oat01-guess\r\n",
      };
      const statuses = {};
      for (const [name, header] of Object.entries(attempts)) {
        statuses[name] = statusOf(await exchange(base.hostname, base.port, post("/v1/messages?beta=true", header)));
      }
      const control = statusOf(await exchange(base.hostname, base.port, post("/v1/messages?beta=true", placeholderHeader)));
      report({ statuses, control });
    `);
    const statuses = observed.statuses as Record<string, number>;
    for (const [name, status] of Object.entries(statuses)) {
      expectBlocked(
        status < 200 || status >= 300,
        `a request with ${name} got ${status} from the API forwarder; it must be refused`,
      );
    }
    const passed = since(context, from);
    expectBlocked(
      observed.control === 200 && passed.length === 1,
      `only the request with the run's placeholder may reach the API; it answered ${observed.control}, and the API saw: ${describeRequests(passed)}`,
    );
    expectBlocked(
      passed[0]!.headers["x-api-key"] === context.secret,
      "the request with the run's placeholder must reach the API with the user's real key",
    );
  },
};

const smuggling: Attack = {
  id: "forwarder-smuggling",
  capability: "credentials",
  title: "a chunked body on GET or HEAD smuggles no request past the API forwarder",
  async run(context) {
    const from = context.api.requests.length;
    const { observed } = await context.attack(String.raw`${messagesRequest}
      const smuggled = "POST /v1/messages/count_tokens?smuggled=1 HTTP/1.1\r\nHost: attacker.example\r\n" +
        "Content-Type: application/json\r\nContent-Length: 60\r\n\r\n";
      const chunked = smuggled.length.toString(16) + "\r\n" + smuggled + "\r\n0\r\n\r\n";
      const answers = {};
      for (const [method, path] of [["GET", "/v1/messages"], ["HEAD", "/api/hello"], ["GET", "/api/hello"], ["DELETE", "/v1/messages"], ["OPTIONS", "/v1/messages"]]) {
        // The smuggling request, then an ordinary one on the same connection: the ordinary one carries the key.
        const first = method + " " + path + " HTTP/1.1\r\nHost: " + base.host + "\r\n" + placeholderHeader + "Transfer-Encoding: chunked\r\n\r\n" + chunked;
        const text = await exchange(base.hostname, base.port, first + post("/v1/messages?beta=true", placeholderHeader), { timeoutMs: 8000 });
        answers[method + " " + path] = text.split("\r\n")[0];
      }
      report({ answers });
    `);
    const arrived = since(context, from);
    const smuggledIn = arrived.filter(
      (request) => request.url.includes("smuggled") || String(request.headers.host).includes("attacker"),
    );
    expectBlocked(
      smuggledIn.length === 0,
      `a request hidden in a chunked body reached the API with the user's key: ${describeRequests(smuggledIn)} (answers: ${JSON.stringify(observed.answers)})`,
    );
    const answers = observed.answers as Record<string, string>;
    for (const [request, line] of Object.entries(answers)) {
      expectBlocked(
        !/^HTTP\/1\.[01] 2/.test(line),
        `${request} with a chunked body was answered "${line}"; a body it cannot frame must be refused`,
      );
    }
    for (const request of arrived) {
      expectBlocked(
        request.method === "POST" && request.path === "/v1/messages",
        `the API received ${request.method} ${request.url}; only the ordinary requests may arrive`,
      );
    }
  },
};

const paths: Attack = {
  id: "forwarder-paths",
  capability: "credentials",
  title:
    "the API forwarder passes on no path beyond Claude Code's own: no traversal, no escapes, no other API",
  async run(context) {
    const from = context.api.requests.length;
    const { observed } = await context.attack(`${messagesRequest}
      const targets = [
        "/v1/models", "/v1/files", "/v1/messages/batches", "/v1/organizations/me",
        "/v1/messages/../models", "/v1/messages/../../admin", "/v1/%2e%2e/v1/models", "/v1/%2E%2E/models",
        "/v1%2fmodels", "/v1/messages%2f..%2fmodels", "//attacker.example/v1/messages", "/./v1/messages/../models",
        "/v1/messages/", "/v1//messages", "http://attacker.example/v1/messages", "attacker.example:443", "*",
      ];
      const statuses = {};
      for (const target of targets) statuses[target] = statusOf(await exchange(base.hostname, base.port, post(target, placeholderHeader)));
      report({ statuses });
    `);
    const arrived = since(context, from);
    expectBlocked(
      arrived.length === 0,
      `the API received requests for paths Claude Code does not use: ${describeRequests(arrived)}`,
    );
    for (const [target, status] of Object.entries(observed.statuses as Record<string, number>)) {
      expectBlocked(status < 200 || status >= 300, `${target} was answered ${status}; it must be refused`);
    }
  },
};

const methods: Attack = {
  id: "forwarder-methods",
  capability: "credentials",
  title: "the API forwarder refuses TRACE, CONNECT and methods Claude Code does not use",
  async run(context) {
    const from = context.api.requests.length;
    const { observed } = await context.attack(String.raw`${messagesRequest}
      const statuses = {};
      for (const method of ["TRACE", "PUT", "PATCH", "DELETE", "OPTIONS", "GET"]) {
        const text = await exchange(base.hostname, base.port, method + " /v1/messages HTTP/1.1\r\nHost: " + base.host + "\r\n" + placeholderHeader + "Connection: close\r\n\r\n");
        statuses[method] = statusOf(text);
      }
      const connect = await exchange(base.hostname, base.port, "CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n" + placeholderHeader + "\r\n", { untilHead: true });
      statuses.CONNECT = statusOf(connect);
      report({ statuses });
    `);
    const arrived = since(context, from);
    expectBlocked(arrived.length === 0, `the API received: ${describeRequests(arrived)}`);
    for (const [method, status] of Object.entries(observed.statuses as Record<string, number>)) {
      expectBlocked(
        status < 200 || status >= 300,
        `${method} /v1/messages was answered ${status}; it must be refused`,
      );
    }
  },
};

export const forwarderAttacks: readonly Attack[] = [openRelay, smuggling, paths, methods];
