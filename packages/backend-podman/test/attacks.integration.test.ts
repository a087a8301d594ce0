// The Podman backend against core's attack suite: an agent inside a real rootless Podman bottle
// tries to use the API forwarder as an open relay, smuggle a request past it, reach API paths
// beyond Claude Code's, read the real credential, and reach the host or cloud metadata through the
// egress proxy.
import { backendAttackSuite } from "@claude-bottle/core/testing";
import { podman } from "../src/index.js";
import { baseOptions, imageRef, testUser } from "./support.js";

backendAttackSuite({
  name: "podman backend",
  createBackend: () => podman(baseOptions),
  imageRef,
  user: testUser,
  // The API double listens on every address; its loopback URL is what the run is given, and the
  // gateway reaches this machine for it as host.containers.internal, as a user's local gateway would be.
  apiDoubleHost: "0.0.0.0",
});
