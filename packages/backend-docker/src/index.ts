export * from "./docker-backend.js";
export { docker as default } from "./docker-backend.js";
