export * from "./agent-image.js";
export * from "./engine-output.js";
export * from "./ephemeral-registry.js";
export * from "./gateway-image.js";
export * from "./image-engine.js";
export * from "./registry-upload.js";
