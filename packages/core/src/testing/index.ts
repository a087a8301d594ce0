export * from "./anthropic-api-double.js";
export * from "./attacks/index.js";
export * from "./backend-conformance.js";
