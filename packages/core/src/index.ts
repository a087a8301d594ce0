// What a backend author needs: the contract, the run spec, capabilities, errors, the network
// policy and the defaults. claude-bottle's own parts (config file schema, git protection, Claude
// Code versions, paths, files, process owners) are subpath exports of their own; the test kit is
// @claude-bottle/core/testing.
export * from "./backend.js";
export * from "./capabilities.js";
export * from "./defaults.js";
export * from "./errors.js";
export * from "./network-policy.js";
export * from "./network-presets.js";
export * from "./run-spec.js";
