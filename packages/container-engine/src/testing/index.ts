export * from "./bottle-runs.js";
export * from "./docker-environment.js";
