/**
 * A test double of the Anthropic Messages API, for end-to-end tests that run the real Claude Code.
 * Claude Code reaches it through ANTHROPIC_BASE_URL; the test scripts what "the model" answers,
 * turn by turn, and afterwards asserts on every request that arrived.
 *
 * It is written here rather than taken from a library because it has to speak exactly the wire
 * format Claude Code's own client parses (Server-Sent Events of the Messages API) and record what
 * Claude Code sent; the integration test runs the real Claude Code binary against it.
 *
 * How requests are answered:
 * - `POST /v1/messages` that carries tools (`body.tools` non-empty) is an agent turn: it takes the
 *   next scripted turn. Claude Code's main loop always sends its tool list.
 * - Any other `POST /v1/messages` is a side request (title or summary generation, the quota check
 *   with `"quota"` and max_tokens 1...): it gets a short text reply and the script is untouched.
 *   Override the rule with `isScripted`.
 * - `POST /v1/messages/count_tokens` gets a token estimate; `HEAD` anything (Claude Code probes
 *   `HEAD /api/hello`) gets 200; anything else gets the API's 404 error shape.
 * - A scripted request that finds the script used up gets HTTP 400 `invalid_request_error` whose
 *   message says so. Claude Code prints it ("API Error: 400 anthropic API double: ...") and exits
 *   1. Claude Code re-sends a request answered with 400 several times (5 re-sends with 2.1.332),
 *   so expect more than one such request; each is recorded with `exhausted: true`.
 *
 * Replies are streamed when the request asks for `"stream": true` (Claude Code always does) and
 * returned as one JSON message otherwise.
 */
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TextBlock {
  type: "text";
  text: string;
}

export interface ToolUseBlock {
  type: "tool_use";
  id: string;
  name: string;
  input: Record<string, unknown>;
}

export type ContentBlock = TextBlock | ToolUseBlock;

export type StopReason = "end_turn" | "tool_use" | "max_tokens" | "stop_sequence";

/** What "the model" answers to one agent turn. */
export type Reply =
  | { kind: "message"; content: ContentBlock[]; stopReason: StopReason }
  /** An API error response (status and the API's error `type`, e.g. 529 "overloaded_error"). */
  | { kind: "error"; status: number; errorType: string; message: string }
  /** Never answer; the request stays open until the double closes (a model that is still thinking). */
  | { kind: "hang" };

/** One step of the script: a fixed reply, or a function that picks the reply from the request. */
export type Turn = Reply | ((request: RecordedRequest) => Reply);

/** How the double classified a request. */
export type RequestRole = "turn" | "side" | "count-tokens" | "probe" | "unknown";

export interface RecordedRequest {
  method: string;
  /** Path and query as sent, e.g. `/v1/messages?beta=true`. */
  url: string;
  /** Path without the query, e.g. `/v1/messages`. */
  path: string;
  /** Header names are lower case (x-api-key, authorization, anthropic-beta...). */
  headers: IncomingHttpHeaders;
  /** The body parsed as JSON; the raw text when it is not JSON; undefined when empty. */
  body: unknown;
  role: RequestRole;
  /** For agent turns: the index in the script of the turn that answered it. */
  turnIndex?: number;
  /** For agent turns that found the script used up. */
  exhausted?: boolean;
}

export interface ToolResult {
  toolUseId: string;
  /** The result's text; text blocks of an array content are joined with newlines. */
  content: string;
  isError: boolean;
  /** The request that carried it. */
  request: RecordedRequest;
}

export interface AnthropicApiDoubleOptions {
  /** What "the model" answers to the agent turns, in order. */
  turns: Turn[];
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default: any free port). */
  port?: number;
  /** Which requests take a scripted turn (default: `isAgentTurn`). */
  isScripted?: (request: RecordedRequest) => boolean;
  /** The text side requests get (default "claude-bottle API double"). */
  sideReply?: string;
}

export interface AnthropicApiDouble extends AsyncDisposable {
  /** Base URL for ANTHROPIC_BASE_URL, e.g. http://127.0.0.1:41234 (loopback when listening on all addresses). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Every request, in order of arrival (recorded once its body has arrived). */
  readonly requests: readonly RecordedRequest[];
  /** The requests that took (or asked for) a scripted turn. */
  turnRequests(): RecordedRequest[];
  /** Scripted turns nobody asked for yet. */
  remainingTurns(): Turn[];
  /** Every tool_result Claude Code sent back, in order, deduplicated by tool_use id. */
  toolResults(): ToolResult[];
  /** Resolves once `count` requests matching `predicate` (default: agent turns) have arrived. */
  waitForRequests(count: number, options?: WaitOptions): Promise<RecordedRequest[]>;
  /** Throws unless every turn was used and no request found the script used up. */
  assertScriptDone(): void;
  close(): Promise<void>;
}

export interface WaitOptions {
  predicate?: (request: RecordedRequest) => boolean;
  timeoutMs?: number;
}

let toolUseCounter = 0;

/** A reply with one text block that ends the turn. */
export function text(value: string): Reply {
  return { kind: "message", content: [{ type: "text", text: value }], stopReason: "end_turn" };
}

/**
 * A reply that calls a tool, e.g. `toolUse("Write", { file_path, content })` or
 * `toolUse("Bash", { command: "echo hi" })`, optionally with text before the call.
 */
export function toolUse(
  name: string,
  input: Record<string, unknown>,
  options: { id?: string; text?: string } = {},
): Reply {
  const call: ToolUseBlock = { type: "tool_use", id: options.id ?? nextToolUseId(), name, input };
  const content: ContentBlock[] = options.text ? [{ type: "text", text: options.text }, call] : [call];
  return { kind: "message", content, stopReason: "tool_use" };
}

/** A reply with several blocks (text and tool calls, e.g. parallel tool calls). */
export function message(
  blocks: Array<TextBlock | (Omit<ToolUseBlock, "id"> & { id?: string })>,
  stopReason?: StopReason,
): Reply {
  const content = blocks.map(
    (block): ContentBlock =>
      block.type === "tool_use" ? { ...block, id: block.id ?? nextToolUseId() } : block,
  );
  const calls = content.some((block) => block.type === "tool_use");
  return { kind: "message", content, stopReason: stopReason ?? (calls ? "tool_use" : "end_turn") };
}

/**
 * An API error reply, e.g. `apiError(529, "overloaded_error", "Overloaded")`. Claude Code retries
 * some errors (it re-sends 400s and 5xx), and each re-send takes the next turn of the script.
 */
export function apiError(status: number, errorType: string, errorMessage: string): Reply {
  return { kind: "error", status, errorType, message: errorMessage };
}

/** A reply that never comes, for tests that interrupt a run while the agent waits for the model. */
export function hang(): Reply {
  return { kind: "hang" };
}

/** The default rule for scripted requests: a Messages request that carries tools. */
export function isAgentTurn(request: RecordedRequest): boolean {
  if (request.method !== "POST" || request.path !== "/v1/messages") return false;
  const tools = (request.body as { tools?: unknown } | undefined)?.tools;
  return Array.isArray(tools) && tools.length > 0;
}

/** The tool_result blocks in one request's last user message. */
export function toolResultsOf(request: RecordedRequest): ToolResult[] {
  const messages = (request.body as { messages?: unknown } | undefined)?.messages;
  if (!Array.isArray(messages)) return [];
  const results: ToolResult[] = [];
  for (const entry of messages) {
    const content = (entry as { role?: unknown; content?: unknown }).content;
    if ((entry as { role?: unknown }).role !== "user" || !Array.isArray(content)) continue;
    for (const block of content as Array<Record<string, unknown>>) {
      if (block.type !== "tool_result") continue;
      results.push({
        toolUseId: String(block.tool_use_id),
        content: resultText(block.content),
        isError: block.is_error === true,
        request,
      });
    }
  }
  return results;
}

export async function startAnthropicApiDouble(
  options: AnthropicApiDoubleOptions,
): Promise<AnthropicApiDouble> {
  const script = [...options.turns];
  const isScripted = options.isScripted ?? isAgentTurn;
  const sideReply = options.sideReply ?? "claude-bottle API double";
  const requests: RecordedRequest[] = [];
  const waiters = new Set<() => void>();
  let nextTurn = 0;
  let messageCounter = 0;

  const server = createServer((req, res) => {
    readBody(req).then(
      (raw) => {
        const request = record(req, raw);
        requests.push(request);
        for (const wake of waiters) wake();
        answer(request, raw, res);
      },
      () => res.destroy(),
    );
  });

  function record(req: IncomingMessage, raw: string): RecordedRequest {
    const url = req.url ?? "/";
    const request: RecordedRequest = {
      method: req.method ?? "GET",
      url,
      path: url.split("?")[0] ?? url,
      headers: req.headers,
      body: parseBody(raw),
      role: "unknown",
    };
    if (request.method === "HEAD") request.role = "probe";
    else if (request.method === "POST" && request.path === "/v1/messages/count_tokens")
      request.role = "count-tokens";
    else if (isScripted(request)) request.role = "turn";
    else if (request.method === "POST" && request.path === "/v1/messages") request.role = "side";
    if (request.role === "turn") {
      if (nextTurn < script.length) request.turnIndex = nextTurn++;
      else request.exhausted = true;
    }
    return request;
  }

  function answer(request: RecordedRequest, raw: string, res: ServerResponse): void {
    const requestId = `req_double_${requests.length}`;
    switch (request.role) {
      case "probe":
        res.writeHead(200, { "request-id": requestId }).end();
        return;
      case "count-tokens":
        sendJson(res, 200, { input_tokens: estimateTokens(raw) }, requestId);
        return;
      case "side":
        sendReply(res, request, raw, text(sideReply), requestId);
        return;
      case "turn": {
        if (request.turnIndex === undefined) {
          const used = script.length;
          sendReply(
            res,
            request,
            raw,
            apiError(
              400,
              "invalid_request_error",
              `anthropic API double: the script has no turn left (all ${used} scripted turns were used; this is request #${requests.indexOf(request) + 1})`,
            ),
            requestId,
          );
          return;
        }
        const turn = script[request.turnIndex]!;
        let reply: Reply;
        try {
          reply = typeof turn === "function" ? turn(request) : turn;
        } catch (error) {
          reply = apiError(
            400,
            "invalid_request_error",
            `anthropic API double: scripted turn ${request.turnIndex} threw: ${(error as Error).message}`,
          );
        }
        sendReply(res, request, raw, reply, requestId);
        return;
      }
      default:
        sendJson(
          res,
          404,
          {
            type: "error",
            error: {
              type: "not_found_error",
              message: `anthropic API double: no route for ${request.method} ${request.path}`,
            },
          },
          requestId,
        );
    }
  }

  function sendReply(
    res: ServerResponse,
    request: RecordedRequest,
    raw: string,
    reply: Reply,
    requestId: string,
  ) {
    if (reply.kind === "hang") return;
    if (reply.kind === "error") {
      sendJson(
        res,
        reply.status,
        { type: "error", error: { type: reply.errorType, message: reply.message }, request_id: requestId },
        requestId,
      );
      return;
    }
    const body = (request.body ?? {}) as { model?: unknown; stream?: unknown };
    const model = typeof body.model === "string" ? body.model : "claude-double";
    const usage = {
      input_tokens: estimateTokens(raw),
      output_tokens: estimateTokens(JSON.stringify(reply.content)),
    };
    const id = `msg_double_${++messageCounter}`;
    if (body.stream === true) {
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "request-id": requestId,
      });
      for (const [event, data] of streamEvents(id, model, reply.content, reply.stopReason, usage)) {
        res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      }
      res.end();
      return;
    }
    sendJson(
      res,
      200,
      {
        id,
        type: "message",
        role: "assistant",
        model,
        content: reply.content,
        stop_reason: reply.stopReason,
        stop_sequence: null,
        usage,
      },
      requestId,
    );
  }

  const listenHost = options.host ?? "127.0.0.1";
  server.listen(options.port ?? 0, listenHost);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const urlHost = listenHost === "0.0.0.0" || listenHost === "::" ? "127.0.0.1" : listenHost;
  const url = `http://${urlHost.includes(":") ? `[${urlHost}]` : urlHost}:${port}`;

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= new Promise<void>((resolve) => {
      for (const wake of waiters) wake();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closed;
  };

  const turnRequests = () => requests.filter((request) => request.role === "turn");

  return {
    url,
    host: listenHost,
    port,
    requests,
    turnRequests,
    remainingTurns: () => script.slice(nextTurn),
    toolResults: () => {
      const seen = new Set<string>();
      const results: ToolResult[] = [];
      for (const request of requests) {
        for (const result of toolResultsOf(request)) {
          if (seen.has(result.toolUseId)) continue;
          seen.add(result.toolUseId);
          results.push(result);
        }
      }
      return results;
    },
    waitForRequests: (count, waitOptions = {}) => {
      const predicate = waitOptions.predicate ?? ((request: RecordedRequest) => request.role === "turn");
      const timeoutMs = waitOptions.timeoutMs ?? 60_000;
      return new Promise<RecordedRequest[]>((resolve, reject) => {
        const done = () => {
          const matching = requests.filter(predicate);
          if (matching.length >= count) finish(() => resolve(matching));
          else if (closed)
            finish(() =>
              reject(
                new Error(
                  `anthropic API double closed after ${matching.length} of ${count} awaited requests`,
                ),
              ),
            );
        };
        const timer = setTimeout(() => {
          const got = requests.filter(predicate).length;
          finish(() =>
            reject(
              new Error(
                `anthropic API double: ${got} of ${count} awaited requests arrived within ${timeoutMs} ms`,
              ),
            ),
          );
        }, timeoutMs);
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(done);
          settle();
        };
        waiters.add(done);
        done();
      });
    },
    assertScriptDone: () => {
      const exhausted = requests.filter((request) => request.exhausted).length;
      const left = script.length - nextTurn;
      if (left === 0 && exhausted === 0) return;
      const problems: string[] = [];
      if (left > 0) problems.push(`${left} of ${script.length} scripted turns were never asked for`);
      if (exhausted > 0) problems.push(`${exhausted} agent requests came after the script was used up`);
      throw new Error(`anthropic API double: ${problems.join("; ")} (${requests.length} requests in all)`);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The Messages API's streaming events for one reply, in order. */
function streamEvents(
  id: string,
  model: string,
  content: ContentBlock[],
  stopReason: StopReason,
  usage: { input_tokens: number; output_tokens: number },
): Array<[string, unknown]> {
  const events: Array<[string, unknown]> = [
    [
      "message_start",
      {
        type: "message_start",
        message: {
          id,
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: usage.input_tokens, output_tokens: 1 },
        },
      },
    ],
    ["ping", { type: "ping" }],
  ];
  content.forEach((block, index) => {
    if (block.type === "text") {
      events.push([
        "content_block_start",
        { type: "content_block_start", index, content_block: { type: "text", text: "" } },
      ]);
      for (const piece of chunks(block.text)) {
        events.push([
          "content_block_delta",
          { type: "content_block_delta", index, delta: { type: "text_delta", text: piece } },
        ]);
      }
    } else {
      events.push([
        "content_block_start",
        {
          type: "content_block_start",
          index,
          content_block: { type: "tool_use", id: block.id, name: block.name, input: {} },
        },
      ]);
      // The API streams a tool's input as fragments of its JSON text; clients concatenate them.
      for (const piece of chunks(JSON.stringify(block.input))) {
        events.push([
          "content_block_delta",
          { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: piece } },
        ]);
      }
    }
    events.push(["content_block_stop", { type: "content_block_stop", index }]);
  });
  events.push(
    [
      "message_delta",
      {
        type: "message_delta",
        delta: { stop_reason: stopReason, stop_sequence: null },
        usage: { output_tokens: usage.output_tokens },
      },
    ],
    ["message_stop", { type: "message_stop" }],
  );
  return events;
}

/** Split text into a few pieces, as the API streams it (never splitting a surrogate pair). */
function chunks(value: string, size = 48): string[] {
  const characters = Array.from(value);
  if (characters.length === 0) return [""];
  const pieces: string[] = [];
  for (let start = 0; start < characters.length; start += size) {
    pieces.push(characters.slice(start, start + size).join(""));
  }
  return pieces;
}

function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  res
    .writeHead(status, { "content-type": "application/json", "request-id": requestId })
    .end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts).toString("utf8");
}

function parseBody(raw: string): unknown {
  if (raw === "") return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** A rough token count (4 characters a token); Claude Code only displays it. */
function estimateTokens(raw: string): number {
  return Math.max(1, Math.ceil(raw.length / 4));
}

function resultText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter(
      (block): block is { type: "text"; text: string } =>
        block?.type === "text" && typeof block.text === "string",
    )
    .map((block) => block.text)
    .join("\n");
}

function nextToolUseId(): string {
  toolUseCounter += 1;
  return `toolu_double_${String(toolUseCounter).padStart(4, "0")}`;
}
