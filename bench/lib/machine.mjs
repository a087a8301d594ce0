/** What the numbers were measured on: they only compare within one run on one machine. */
import { cpus, totalmem } from "node:os";
import { output } from "./measure.mjs";
import { repoRoot } from "./setup.mjs";

export async function machineInfo() {
  const quiet = (promise) => promise.then((text) => text.trim()).catch(() => "unknown");
  const [dockerVersion, commit, dirty, otherContainers] = await Promise.all([
    quiet(output("docker", ["version", "--format", "{{.Server.Version}}"])),
    quiet(output("git", ["-C", repoRoot, "rev-parse", "--short", "HEAD"])),
    quiet(output("git", ["-C", repoRoot, "status", "--porcelain", "--untracked-files=no"])),
    quiet(output("docker", ["ps", "--quiet"])),
  ]);
  return {
    date: new Date().toISOString(),
    commit: dirty && dirty !== "unknown" ? `${commit} (with uncommitted changes)` : commit,
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    docker: dockerVersion,
    containersRunningAtStart:
      otherContainers === "unknown" ? otherContainers : otherContainers.split("\n").filter(Boolean).length,
  };
}
