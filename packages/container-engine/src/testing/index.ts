export * from "./bottle-runs.js";
export * from "./docker-environment.js";
export * from "./warm-gateways.js";
