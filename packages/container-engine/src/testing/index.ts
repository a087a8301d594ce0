export * from "./docker-environment.js";
