// The Podman backend against the Backend contract every backend must meet (core's shared suite),
// on this user's real rootless Podman with the real agent image, as the invoking user.
import { backendConformanceSuite } from "@claude-bottle/core/testing";
import { podman } from "../src/index.js";
import { baseOptions, imageRef, testUser } from "./support.js";

backendConformanceSuite({
  name: "podman backend",
  createBackend: () => podman(baseOptions),
  imageRef,
  user: testUser,
});
