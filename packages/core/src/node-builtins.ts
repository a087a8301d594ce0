/**
 * node:http, node:https, node:tls and node:stream, reached through `require` rather than `import`. Importing
 * them as ES modules makes Node build their ES module facades, which read every export, lazy ones
 * included, and one of those loads undici: tens of milliseconds on Node 24, paid at start-up by
 * every command that merely loads a module importing them (the CLI's `run` and `shell` load core,
 * container-engine and the gateway's light parts). Through `require` it is the same module object,
 * without the facade, loaded only when first used. Type-only imports (`import type … from
 * "node:http"`) are erased and cost nothing.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export const nodeHttp = (): typeof import("node:http") => require("node:http");
export const nodeHttps = (): typeof import("node:https") => require("node:https");
export const nodeTls = (): typeof import("node:tls") => require("node:tls");
export const nodeStream = (): typeof import("node:stream") => require("node:stream");
