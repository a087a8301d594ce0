export * from "./app-dir.js";
export * from "./host-addresses.js";
export * from "./layout.js";
export * from "./protocol.js";

import { meetingDir, relayFile } from "./layout.js";

/**
 * The bottle's command prefix: `node -e <bootstrap> --` before the bottle's own command. The
 * bootstrap waits for the gateway to publish the relay (see relay.ts) in the shared folder, then
 * loads it; the relay runs the command. It gives up after a minute: by then the CLI has long
 * removed a bottle whose gateway did not start.
 */
export function bottleBootstrap(): string[] {
  const relay = JSON.stringify(`${meetingDir}/${relayFile}`);
  const code =
    `const f=${relay},fs=require("fs"),t=Date.now();` +
    `(function w(){if(fs.existsSync(f))import(f);` +
    `else if(Date.now()-t>60000){fs.writeSync(2,"claude-bottle: the bottle's gateway did not start\\n");process.exit(125)}` +
    "else setTimeout(w,5)})()";
  return ["node", "-e", code, "--"];
}
