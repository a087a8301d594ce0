export * from "./docker-backend.js";
export { docker as default, dockerOptionsSchema as optionsSchema } from "./docker-backend.js";
