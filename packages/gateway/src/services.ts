// The host services as a library: what a runtime without a gateway container (a VM, whose own
// network claude-bottle's CLI fronts) starts in the CLI's process.
export * from "./allow-rules.js";
export * from "./api-forwarder.js";
export * from "./egress-proxy.js";
export * from "./host-services.js";
