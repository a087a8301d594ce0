/**
 * The attack suite: what an agent inside a bottle could try in order to reach the host, the real
 * credential or what it may not reach, each tried from inside a real bottle of the backend under
 * test. Like the conformance suite, any backend runs it in a few lines:
 *
 *     backendAttackSuite({
 *       name: "docker backend",
 *       createBackend: () => docker({ ...sharedOptions }),
 *       imageRef: "claude-bottle-test-agent:latest",
 *     });
 *
 * Each family of attacks lives in a file of its own here and exports its list; `backendAttacks`
 * is simply all of them. A new family is a new file and one more line below. The image must have
 * `sh` and `node` (the agent image runs Claude Code on Node).
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import { credentialAttacks } from "./credential.js";
import { egressProxyAttacks } from "./egress-proxy.js";
import { forwarderAttacks } from "./forwarder.js";
import {
  type Attack,
  type AttackContext,
  type BackendAttackOptions,
  createAttackContext,
} from "./support.js";

export {
  type Attack,
  type AttackContext,
  type AttackOutcome,
  AttackSucceeded,
  type BackendAttackOptions,
  bottleToolkit,
  createAttackContext,
  type DecoyService,
  expectBlocked,
} from "./support.js";

/** Every attack, in the order the suite tries them. */
export const backendAttacks: readonly Attack[] = [
  ...forwarderAttacks,
  ...credentialAttacks,
  ...egressProxyAttacks,
];

const defaultTimeouts = { check: 180_000, prepare: 600_000 };

/**
 * Register, as vitest tests in a describe block named after the backend, every attack on a
 * capability the backend declares. The backend is made once while the tests are collected, to
 * read what it declares.
 */
export function backendAttackSuite<Prepared>(options: BackendAttackOptions<Prepared>): void {
  describe(`${options.name} withstands attacks from inside the bottle`, async () => {
    const declared = (await options.createBackend()).capabilities ?? {};
    let context: (AttackContext<Prepared> & { close(): Promise<void> }) | undefined;
    beforeAll(async () => {
      context = await createAttackContext(options);
    }, options.prepareTimeoutMs ?? defaultTimeouts.prepare);
    afterAll(async () => {
      await context?.close();
    });
    for (const attack of backendAttacks) {
      if (!declared[attack.capability]) continue;
      it(
        attack.title,
        async () => {
          if (!context) throw new Error("the backend could not be set up (see the error of beforeAll)");
          await attack.run(context as AttackContext);
        },
        options.checkTimeoutMs ?? defaultTimeouts.check,
      );
    }
  });
}
