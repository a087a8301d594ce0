// The host services as a library, for code that runs them outside the gateway program (its own
// tests and the attack suite's fixture, a third-party runtime) and for the types the CLI and the
// container layer share with the gateway (the denial log, the placeholder's shape).
export * from "./allow-rules.js";
export * from "./api-forwarder.js";
export * from "./egress-proxy.js";
export * from "./host-services.js";
