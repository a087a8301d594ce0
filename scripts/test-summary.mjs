// Adds up the vitest JSON reports that each package's test run wrote into one closing line:
// "tests: N passed, N failed, N skipped". Exits non-zero when a test failed or none ran.
// Reports of runs against another engine topology (PACKAGE.TOPOLOGY.json, see vitest.shared.ts)
// count in the total and also get a line of their own, so a failure there is seen as such.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
const tallies = new Map();
const tally = (name) => {
  if (!tallies.has(name)) tallies.set(name, { passed: 0, failed: 0, skipped: 0 });
  return tallies.get(name);
};
const total = tally("");
for (const name of readdirSync(dir).filter((n) => n.endsWith(".json"))) {
  const report = JSON.parse(readFileSync(join(dir, name), "utf8"));
  const failedSuites =
    report.numFailedTestSuites > 0 && report.numFailedTests === 0 ? report.numFailedTestSuites : 0;
  const topology = name.split(".").slice(1, -1).join(".");
  for (const t of topology ? [total, tally(topology)] : [total]) {
    t.passed += report.numPassedTests;
    t.failed += report.numFailedTests + failedSuites;
    t.skipped += report.numPendingTests + (report.numTodoTests ?? 0);
  }
}
const line = (t) => `${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped`;
for (const [topology, t] of tallies) if (topology) console.log(`tests against ${topology}: ${line(t)}`);
console.log(`tests: ${line(total)}`);
process.exit(total.failed > 0 || total.passed === 0 ? 1 : 0);
