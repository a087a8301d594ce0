export * from "./availability.js";
export * from "./ensure-smolmachine.js";
export * from "./machine-plan.js";
export * from "./machine-records.js";
export * from "./run-smolmachine.js";
export * from "./smolmachine-cache.js";
export * from "./smolmachines-backend.js";
export {
  smolmachines as default,
  smolmachinesOptionsSchema as optionsSchema,
} from "./smolmachines-backend.js";
export * from "./smolvm-cli.js";
