import { describe, expect, it } from "vitest";
import { engineNotes } from "./engine-advisories.js";

describe("engineNotes", () => {
  it("names CVE-2024-29018 for engines before its fix, with the versions to upgrade to", () => {
    for (const version of ["20.10.24+dfsg1", "23.0.10", "24.0.9", "25.0.4"]) {
      const [note, ...rest] = engineNotes(version);
      expect(rest).toEqual([]);
      expect(note).toContain("CVE-2024-29018");
      expect(note).toContain("upgrade to 26.0.0");
    }
  });

  it("says nothing for engines with the fix", () => {
    for (const version of ["23.0.11", "25.0.5", "26.0.0", "27.3.1", "28.2.2"]) {
      expect(engineNotes(version)).toEqual([]);
    }
  });

  it("says when the version can't be read", () => {
    expect(engineNotes("dev")).toEqual([
      expect.stringContaining("could not read the engine's version (dev)"),
    ]);
  });
});
