/** What claude-bottle uses when nothing configures otherwise. */
export const defaults = {
  backend: "docker",
  /** The tag the agent image is built as. */
  imageRef: "claude-bottle:latest",
  /** The bundled Dockerfile's base: a current Node LTS slim image. */
  baseImage: "node:24-bookworm-slim",
  /** The Claude Code release installed into the agent image. */
  claudeCodeVersion: "2.1.332",
  /**
   * The bottle's limits when nothing sets them: the CLI's `resources.*` defaults, and what a
   * container backend applies to a spec without them, so a runaway agent cannot take the machine.
   */
  resources: { cpus: 2, memoryMiB: 4096, pids: 1024 },
} as const;
