import { describe, expect, it } from "vitest";
import { engineFailure, engineOutputReader } from "./engine-output.js";

const read = (output: string) => {
  const reader = engineOutputReader();
  return output
    .split("\n")
    .map(reader)
    .filter((event) => event !== undefined);
};

describe("reading the engine's output", () => {
  it("finds the legacy builder's steps and keeps the RUN's own output, dropping its bookkeeping", () => {
    // As the legacy builder prints a build without a terminal (recorded from Docker 20.10).
    const output = `DEPRECATED: The legacy builder is deprecated and will be removed in a future release.
            Install the buildx component to build images with BuildKit:
            https://docs.docker.com/go/buildx/

Sending build context to Docker daemon  3.072kB
Step 1/4 : FROM local/debian:bookworm
 ---> f548fcfcf4ce
Step 2/4 : ARG V=1
 ---> Running in 4b937a649ad7
Removing intermediate container 4b937a649ad7
 ---> f037228f9454
Step 3/4 : RUN echo "hello $V"  && npm install --global   "@anthropic-ai/claude-code@2.1.332"
 ---> Running in f5083e04dfa9
hello 25172
added 3 packages in 11s
Removing intermediate container f5083e04dfa9
 ---> 7ff5827354d1
Step 4/4 : COPY x /x
 ---> Using cache
 ---> 00f95c3e64fd
Successfully built 00f95c3e64fd
Successfully tagged cb-test:t`;
    expect(read(output)).toEqual([
      { kind: "step", text: "[1/4] FROM local/debian:bookworm" },
      { kind: "step", text: "[2/4] ARG V=1" },
      {
        kind: "step",
        text: '[3/4] RUN echo "hello $V" && npm install --global "@anthropic-ai/claude-code@2.1.332"',
      },
      { kind: "output", text: "hello 25172" },
      { kind: "output", text: "added 3 packages in 11s" },
      { kind: "step", text: "[4/4] COPY x /x" },
    ]);
  });

  it("counts the layers of a pull during a legacy build's FROM", () => {
    const output = `Step 1/3 : FROM node:24-bookworm-slim
24-bookworm-slim: Pulling from library/node
105c069fa370: Already exists
734b84cbfaf3: Pulling fs layer
9c1d2a7e0b11: Pulling fs layer
734b84cbfaf3: Downloading
734b84cbfaf3: Verifying Checksum
734b84cbfaf3: Download complete
734b84cbfaf3: Pull complete
9c1d2a7e0b11: Pull complete
Digest: sha256:bbe76e482a0cd57e791149a81f0dd4e4a257ba99c6c4ab397b22b17631f2ffe2`;
    const transfers = read(output)
      .filter((event) => event.kind === "transfer")
      .map((event) => event.text);
    expect(transfers[0]).toBe("pulled 1 of 1 layers");
    expect(transfers).toContain("pulled 1 of 3 layers");
    expect(transfers.at(-1)).toBe("pulled 3 of 3 layers");
  });

  it("counts pushed layers", () => {
    // As `docker push` prints without a terminal (recorded from Docker 20.10).
    const output = `The push refers to repository [localhost:32798/eo]
3a50fdad0d4a: Preparing
e21de3008f63: Preparing
3a50fdad0d4a: Pushed
e21de3008f63: Layer already exists
1: digest: sha256:bbe76e482a0cd57e791149a81f0dd4e4a257ba99c6c4ab397b22b17631f2ffe2 size: 736`;
    expect(read(output).filter((event) => event.kind === "transfer")).toEqual([
      { kind: "transfer", text: "pushed 0 of 1 layers" },
      { kind: "transfer", text: "pushed 0 of 2 layers" },
      { kind: "transfer", text: "pushed 1 of 2 layers" },
      { kind: "transfer", text: "pushed 2 of 2 layers" },
    ]);
  });

  it("finds BuildKit's steps once each, with download progress and the RUN's output", () => {
    // BuildKit's plain progress (what `docker build` prints through buildx without a terminal).
    const output = `#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 1.23kB done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/node:24-bookworm-slim
#2 DONE 1.2s

#4 [1/6] FROM docker.io/library/node:24-bookworm-slim@sha256:4f0c2a
#4 resolve docker.io/library/node:24-bookworm-slim@sha256:4f0c2a 0.0s done
#4 sha256:1f3e46996e29 0B / 28.23MB 0.2s
#4 sha256:1f3e46996e29 9.44MB / 28.23MB 0.5s
#4 sha256:1f3e46996e29 28.23MB / 28.23MB 1.1s done
#4 extracting sha256:1f3e46996e29 0.1s
#4 DONE 3.2s

#6 [2/6] COPY extra-ca-certificates.pem /usr/local/share/ca-certificates/claude-bottle-extra.crt
#6 CACHED

#7 [build 5/6] RUN npm install --global --no-audit --no-fund "@anthropic-ai/claude-code@2.1.340"  && claude --version
#7 0.512 npm warn config production Use \`--omit=dev\` instead.
#8 [internal] load build context
#7 [build 5/6] RUN npm install --global --no-audit --no-fund "@anthropic-ai/claude-code@2.1.340"  && claude --version
#7 12.31 added 3 packages in 11s
#7 DONE 14.2s

#9 exporting to image
#9 exporting layers 0.6s done
#9 DONE 0.7s`;
    expect(read(output)).toEqual([
      { kind: "step", text: "load build definition from Dockerfile" },
      { kind: "output", text: "transferring dockerfile: 1.23kB done" },
      { kind: "step", text: "load metadata for docker.io/library/node:24-bookworm-slim" },
      { kind: "step", text: "[1/6] FROM docker.io/library/node:24-bookworm-slim@sha256:4f0c2a" },
      { kind: "output", text: "resolve docker.io/library/node:24-bookworm-slim@sha256:4f0c2a 0.0s done" },
      { kind: "transfer", text: "downloading 0B / 28.23MB" },
      { kind: "transfer", text: "downloading 9.44MB / 28.23MB" },
      { kind: "transfer", text: "downloaded 28.23MB" },
      { kind: "transfer", text: "extracting" },
      {
        kind: "step",
        text: "[2/6] COPY extra-ca-certificates.pem /usr/local/share/ca-certificates/claude-bottle-extra.crt",
      },
      {
        kind: "step",
        text: '[build 5/6] RUN npm install --global --no-audit --no-fund "@anthropic-ai/claude-code@2.1.340" && claude --version',
      },
      { kind: "output", text: "npm warn config production Use `--omit=dev` instead." },
      { kind: "step", text: "load build context" },
      { kind: "output", text: "added 3 packages in 11s" },
      { kind: "step", text: "exporting to image" },
      { kind: "output", text: "exporting layers 0.6s done" },
    ]);
  });
});

describe("engineFailure", () => {
  it.each([
    [
      "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
      "unreachable",
    ],
    [
      "Cannot connect to Podman. Please verify your connection to the Linux system using `podman system connection list`",
      "unreachable",
    ],
    ["Error response from daemon: No such container: b1", "no-such-container"],
    ["Error: removal of container b1 is already in progress", "removal-in-progress"],
    ["Error response from daemon: get b-gateway: no such volume", "no-such-volume"],
    ['Error: no volume with name "b-gateway" found: no such volume', "no-such-volume"],
    [
      'Error: creating named volume "b-gateway": adding volume to state: name b-gateway is in use: volume already exists',
      "volume-exists",
    ],
    ["Error: volume with name b-gateway already exists: volume already exists", "volume-exists"],
    ["Error response from daemon: Container 3f2a is not running", "not-running"],
    ["Error: can only create exec sessions on running containers: container state improper", "not-running"],
    ["Error response from daemon: remove b-gateway: volume is in use - [f00]", "volume-in-use"],
    [
      "Error: volume b-gateway is being used by the following container(s): f00: volume is being used",
      "volume-in-use",
    ],
    ["Bind for 127.0.0.1:8080 failed: port is already allocated", "port-in-use"],
    ["rootlessport listen tcp 127.0.0.1:8080: bind: address already in use", "port-in-use"],
    ["Error: OCI runtime error: crun: cgroups in hybrid mode not supported", undefined],
  ])("reads %j as %s", (output, failure) => {
    expect(engineFailure(output)).toBe(failure);
  });
});

describe("engineFailure and images that cannot be had", () => {
  it.each([
    "Unable to find image 'local/nope:1' locally\ndocker: Error response from daemon: pull access denied for local/nope, repository does not exist",
    "Error response from daemon: manifest for node:99 not found: manifest unknown",
    "Error: initializing source docker://nope:1: reading manifest 1 in docker.io/library/nope: requested access to the resource is denied",
    "Error: nope:1: image not known",
    'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host',
  ])("reads %j as an image that is not available", (output) => {
    expect(engineFailure(output)).toBe("image-unavailable");
  });
});
