export * from "./docker-backend.js";
export { docker as default, dockerOptionsSchema as optionsSchema } from "./docker-backend.js";
export { gatewayNames, gatewayRunArgs } from "./docker-gateway.js";
export {
  bottleLabelsFor,
  type DockerRunInput,
  defaultResources,
  dockerRunArgs,
  fallbackUser,
  formatDockerCommand,
  readOnlyPathMounts,
} from "./docker-run-args.js";
