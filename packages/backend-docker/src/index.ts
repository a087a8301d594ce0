export * from "./docker-backend.js";
export { docker as default } from "./docker-backend.js";
export {
  bottleLabelsFor,
  type DockerRunInput,
  defaultResources,
  dockerNetworkCreateArgs,
  dockerRunArgs,
  fallbackUser,
  formatDockerCommand,
  readOnlyPathMounts,
} from "./docker-run-args.js";
export {
  guardChainPrefix,
  type HostFirewallOptions,
  type HostFirewallStrategy,
} from "./host-firewall.js";
