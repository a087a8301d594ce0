export * from "./anthropic-api-double.js";
export * from "./docker-environment.js";
