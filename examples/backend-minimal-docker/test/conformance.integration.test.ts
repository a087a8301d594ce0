// The example against core's Backend contract: the same suite claude-bottle's own backends run. It
// registers a check for each capability the backend declares (user, resources) and none for the
// ones it does not, so nothing is skipped. Any image with sh and coreutils does; the tests use the
// local base image (scripts/image-env.sh sets CLAUDE_BOTTLE_BASE_IMAGE).
import { backendConformanceSuite } from "@claude-bottle/core/testing";
import minimalDocker from "../src/index.js";

const imageRef = process.env.CLAUDE_BOTTLE_BASE_IMAGE ?? "node:24-bookworm-slim";

backendConformanceSuite({
  name: "minimal-docker example backend",
  createBackend: () =>
    minimalDocker({
      dockerPath: "docker",
      image: { kind: "existing" },
      cacheDir: "/nonexistent/cache",
      dataDir: "/nonexistent/data",
    }),
  imageRef,
  // The backend holds no allow-list, so it runs only open (or none) networks.
  spec: { network: { mode: "open" } },
  user: { uid: 4242, gid: 4343 },
});
