import { describe, expect, it } from "vitest";
import {
  apiError,
  hang,
  message,
  type RecordedRequest,
  startAnthropicApiDouble,
  text,
  toolResultsOf,
  toolUse,
} from "./anthropic-api-double.js";

const tools = [{ name: "Write", input_schema: { type: "object" } }];

function agentRequest(messages: unknown[], extra: Record<string, unknown> = {}) {
  return { model: "claude-test-model", max_tokens: 1024, stream: true, tools, messages, ...extra };
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${url}/v1/messages?beta=true`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

/** The JSON of the API's plain (non-stream) answers. */
interface ApiJson {
  type?: string;
  input_tokens?: number;
  error?: { type: string; message: string };
}

async function json(response: Response): Promise<ApiJson> {
  return (await response.json()) as ApiJson;
}

/** Parse a Server-Sent Events body into its events, checking each names the same type as its data. */
function parseSse(body: string): Array<{ event: string; data: Record<string, unknown> }> {
  return body
    .split("\n\n")
    .filter((frame) => frame.trim() !== "")
    .map((frame) => {
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = JSON.parse(/^data: (.*)$/m.exec(frame)?.[1] ?? "null");
      expect(data.type).toBe(event);
      return { event: event!, data };
    });
}

/** Rebuild the assistant message from its stream, the way a client does. */
function assemble(events: Array<{ event: string; data: Record<string, unknown> }>) {
  const content: Array<Record<string, unknown>> = [];
  const json: string[] = [];
  let stopReason: unknown;
  for (const { data } of events) {
    if (data.type === "content_block_start") {
      content[data.index as number] = { ...(data.content_block as object) };
      json[data.index as number] = "";
    }
    if (data.type === "content_block_delta") {
      const delta = data.delta as { type: string; text?: string; partial_json?: string };
      const block = content[data.index as number]!;
      if (delta.type === "text_delta") block.text = `${block.text}${delta.text}`;
      if (delta.type === "input_json_delta") json[data.index as number] += delta.partial_json ?? "";
    }
    if (data.type === "content_block_stop" && content[data.index as number]!.type === "tool_use") {
      content[data.index as number]!.input = JSON.parse(json[data.index as number]!);
    }
    if (data.type === "message_delta") stopReason = (data.delta as Record<string, unknown>).stop_reason;
  }
  return { content, stopReason };
}

describe("the Anthropic API double", () => {
  it("streams scripted turns in order as Messages API events and records what arrived", async () => {
    const longContent = `${"x".repeat(200)} ünïcødé 🍾`;
    await using api = await startAnthropicApiDouble({
      turns: [
        toolUse("Write", { file_path: "/w/a.txt", content: longContent }, { id: "toolu_1" }),
        text("done"),
      ],
    });

    const first = await post(api.url, agentRequest([{ role: "user", content: "write it" }]), {
      "x-api-key": "sk-test-key",
    });
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = parseSse(await first.text());
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "ping",
      "content_block_start",
      ...Array(events.length - 6).fill("content_block_delta"),
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(events.filter((e) => e.event === "content_block_delta").length).toBeGreaterThan(1);
    expect((events[0]!.data.message as Record<string, unknown>).model).toBe("claude-test-model");
    expect(assemble(events)).toEqual({
      content: [
        {
          type: "tool_use",
          id: "toolu_1",
          name: "Write",
          input: { file_path: "/w/a.txt", content: longContent },
        },
      ],
      stopReason: "tool_use",
    });

    const followUp = agentRequest([
      { role: "user", content: "write it" },
      { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "Write", input: {} }] },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "File created" }] },
        ],
      },
    ]);
    const second = await post(api.url, followUp, { authorization: "Bearer oauth-token" });
    expect(assemble(parseSse(await second.text()))).toEqual({
      content: [{ type: "text", text: "done" }],
      stopReason: "end_turn",
    });

    expect(api.requests.map((r) => [r.method, r.url, r.role, r.turnIndex])).toEqual([
      ["POST", "/v1/messages?beta=true", "turn", 0],
      ["POST", "/v1/messages?beta=true", "turn", 1],
    ]);
    expect(api.requests[0]!.headers["x-api-key"]).toBe("sk-test-key");
    expect(api.requests[1]!.headers.authorization).toBe("Bearer oauth-token");
    expect(api.requests[1]!.body).toEqual(followUp);
    expect(
      api.toolResults().map(({ toolUseId, content, isError }) => ({ toolUseId, content, isError })),
    ).toEqual([{ toolUseId: "toolu_1", content: "File created", isError: false }]);
    expect(api.remainingTurns()).toEqual([]);
    expect(() => api.assertScriptDone()).not.toThrow();
  });

  it("answers side requests, token counts and probes without using the script", async () => {
    await using api = await startAnthropicApiDouble({
      turns: [text("the real answer")],
      sideReply: "A title",
    });

    const title = await post(api.url, {
      model: "claude-small",
      max_tokens: 50,
      stream: true,
      system: "Generate a title",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(assemble(parseSse(await title.text())).content).toEqual([{ type: "text", text: "A title" }]);
    const quota = await post(api.url, { model: "m", max_tokens: 1, stream: true, tools: [], messages: [] });
    expect(assemble(parseSse(await quota.text())).content).toEqual([{ type: "text", text: "A title" }]);

    const count = await fetch(`${api.url}/v1/messages/count_tokens?beta=true`, {
      method: "POST",
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(400) }] }),
    });
    expect((await json(count)).input_tokens).toBeGreaterThan(90);

    expect((await fetch(`${api.url}/api/hello`, { method: "HEAD" })).status).toBe(200);
    const unknown = await fetch(`${api.url}/v1/models`);
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).error?.type).toBe("not_found_error");

    expect(api.remainingTurns()).toHaveLength(1);
    const answer = await post(api.url, agentRequest([{ role: "user", content: "hi" }]));
    expect(assemble(parseSse(await answer.text())).content).toEqual([
      { type: "text", text: "the real answer" },
    ]);
    expect(api.requests.map((r) => r.role)).toEqual([
      "side",
      "side",
      "count-tokens",
      "probe",
      "unknown",
      "turn",
    ]);
  });

  it("fails visibly with an API error once the script is used up, and says so in assertScriptDone", async () => {
    await using api = await startAnthropicApiDouble({ turns: [text("only one")] });
    await (await post(api.url, agentRequest([]))).text();

    const extra = await post(api.url, agentRequest([]));
    expect(extra.status).toBe(400);
    const body = await json(extra);
    expect(body.type).toBe("error");
    expect(body.error?.type).toBe("invalid_request_error");
    expect(body.error?.message).toMatch(/anthropic API double: the script has no turn left/);
    expect(api.requests[1]!.exhausted).toBe(true);
    expect(() => api.assertScriptDone()).toThrow(/1 agent requests came after the script was used up/);
  });

  it("reports turns nobody asked for", async () => {
    await using api = await startAnthropicApiDouble({ turns: [text("a"), text("b")] });
    await (await post(api.url, agentRequest([]))).text();
    expect(api.remainingTurns()).toEqual([text("b")]);
    expect(() => api.assertScriptDone()).toThrow(/1 of 2 scripted turns were never asked for/);
  });

  it("returns one JSON message to a request that does not stream", async () => {
    await using api = await startAnthropicApiDouble({
      turns: [
        message([
          { type: "text", text: "two calls" },
          { type: "tool_use", id: "t1", name: "Bash", input: { command: "ls" } },
        ]),
      ],
    });
    const response = await post(api.url, agentRequest([], { stream: false }));
    expect(await response.json()).toMatchObject({
      type: "message",
      role: "assistant",
      model: "claude-test-model",
      stop_reason: "tool_use",
      content: [
        { type: "text", text: "two calls" },
        { type: "tool_use", id: "t1", name: "Bash", input: { command: "ls" } },
      ],
    });
  });

  it("lets a turn depend on the request and scripts API errors", async () => {
    await using api = await startAnthropicApiDouble({
      turns: [
        (request: RecordedRequest) => text(`you sent ${toolResultsOf(request)[0]?.content ?? "nothing"}`),
        apiError(529, "overloaded_error", "Overloaded"),
      ],
    });
    const withResult = agentRequest([
      { role: "user", content: [{ type: "tool_result", tool_use_id: "t", content: "bottle-42" }] },
    ]);
    expect(assemble(parseSse(await (await post(api.url, withResult)).text())).content).toEqual([
      { type: "text", text: "you sent bottle-42" },
    ]);
    const overloaded = await post(api.url, agentRequest([]));
    expect(overloaded.status).toBe(529);
    expect((await json(overloaded)).error).toEqual({ type: "overloaded_error", message: "Overloaded" });
  });

  it("holds a hanging turn open until closed, and waitForRequests sees it arrive", async () => {
    const api = await startAnthropicApiDouble({ turns: [hang()] });
    const pending = post(api.url, agentRequest([])).then(
      (response) => response.text(),
      (error: Error) => `failed: ${error.message}`,
    );
    const [arrived] = await api.waitForRequests(1, { timeoutMs: 5000 });
    expect(arrived!.turnIndex).toBe(0);
    const settled = await Promise.race([pending, new Promise((r) => setTimeout(() => r("still open"), 300))]);
    expect(settled).toBe("still open");
    await api.close();
    expect(await pending).toMatch(/^failed: /);
  });

  it("rejects waitForRequests when too few requests arrive in time", async () => {
    await using api = await startAnthropicApiDouble({ turns: [] });
    await expect(api.waitForRequests(1, { timeoutMs: 100 })).rejects.toThrow(
      /0 of 1 awaited requests arrived within 100 ms/,
    );
  });

  it("gives a loopback URL when listening on all addresses", async () => {
    await using api = await startAnthropicApiDouble({ host: "0.0.0.0", turns: [text("hi")] });
    expect(api.url).toBe(`http://127.0.0.1:${api.port}`);
    expect(api.host).toBe("0.0.0.0");
    expect((await post(api.url, agentRequest([]))).status).toBe(200);
  });
});
