// The Docker backend against the Backend contract every backend must meet (core's shared suite),
// on the real engine with the real agent image.
import { backendConformanceSuite } from "@claude-bottle/core/testing";
import { docker } from "../src/index.js";
import { baseOptions, imageRef, testUser } from "./support.js";

backendConformanceSuite({
  name: "docker backend",
  createBackend: () => docker(baseOptions),
  imageRef,
  user: testUser,
});
