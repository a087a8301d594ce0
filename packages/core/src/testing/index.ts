export * from "./anthropic-api-double.js";
export * from "./backend-conformance.js";
export * from "./docker-environment.js";
