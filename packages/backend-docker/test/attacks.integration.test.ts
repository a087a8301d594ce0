// The Docker backend against core's attack suite: an agent inside a real bottle, on the real
// engine with the real agent image, tries to use the API forwarder as an open relay, smuggle a
// request past it, reach API paths beyond Claude Code's, read the real credential, and reach the
// host or cloud metadata through the egress proxy.

import { urlForEngine } from "@claude-bottle/container-engine/testing";
import { backendAttackSuite } from "@claude-bottle/core/testing";
import { docker } from "../src/index.js";
import { baseOptions, imageRef, testUser } from "./support.js";

backendAttackSuite({
  name: "docker backend",
  createBackend: () => docker(baseOptions),
  imageRef,
  user: testUser,
  // The services run in the gateway container, which reaches this machine at the engine's host address.
  apiDoubleHost: "0.0.0.0",
  apiUrlFor: (url) => urlForEngine(url),
});
