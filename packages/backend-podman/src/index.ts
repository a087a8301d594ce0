import type { BackendFactory } from "@claude-bottle/core";
import { type PodmanOptions, podman } from "./podman-backend.js";

export * from "./availability.js";
export * from "./podman-backend.js";
export default podman satisfies BackendFactory<PodmanOptions>;
