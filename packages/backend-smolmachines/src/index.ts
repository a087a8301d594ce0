export * from "./ensure-smolmachine.js";
export * from "./smolvm-cli.js";
