/**
 * node:http and node:https, reached through `require` rather than `import`. Importing either as an
 * ES module makes Node build its ES module facade, which reads every export, lazy ones included,
 * and one of those loads undici: about 25 ms on Node 24, paid at start-up by every command that
 * merely loads core. Through `require` it is the same module object, without the facade.
 * Type-only imports (`import type … from "node:http"`) are erased and cost nothing.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export const nodeHttp = (): typeof import("node:http") => require("node:http");
export const nodeHttps = (): typeof import("node:https") => require("node:https");
