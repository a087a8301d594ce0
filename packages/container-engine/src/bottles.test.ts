import { bottleLabels } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import { engineTimeToIso, toBottleInfo } from "./bottles.js";
import { dockerFlavor } from "./engine-flavor.js";

describe("toBottleInfo", () => {
  it("shows a container from docker ps as a bottle: name, workspace, start time, status", () => {
    const info = toBottleInfo(
      {
        id: "f00",
        name: "claude-bottle-engine-1a2b3c",
        image: "sha256:abc",
        status: "Up 3 minutes",
        createdAt: "2025-05-05 10:00:00 +0200 CEST",
        labels: { [bottleLabels.workspace]: "/home/ada/src/engine", [bottleLabels.role]: "bottle" },
      },
      dockerFlavor,
    );
    expect(info).toEqual({
      name: "claude-bottle-engine-1a2b3c",
      backend: "docker",
      workspace: "/home/ada/src/engine",
      startedAt: "2025-05-05T08:00:00.000Z",
      status: "Up 3 minutes",
    });
  });
});

describe("engineTimeToIso", () => {
  it.each([
    ["2025-05-05 10:00:00 +0000 UTC", "2025-05-05T10:00:00.000Z"],
    ["2025-12-31 23:30:00 -0130 NST", "2026-01-01T01:00:00.000Z"],
    ["2025-05-05 10:00:00.123456789 +0000 UTC", "2025-05-05T10:00:00.123Z"],
  ])("reads %s", (text, iso) => {
    expect(engineTimeToIso(text)).toBe(iso);
  });

  it("passes text it does not understand through unchanged", () => {
    expect(engineTimeToIso("yesterday")).toBe("yesterday");
  });
});
