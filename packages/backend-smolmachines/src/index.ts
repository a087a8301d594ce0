export * from "./ensure-smolmachine.js";
export * from "./smolmachines-backend.js";
export { smolmachines as default } from "./smolmachines-backend.js";
export * from "./smolvm-cli.js";
