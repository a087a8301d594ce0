/**
 * The backends that ship with claude-bottle, by the name users pick them by. Each is an ordinary
 * backend package, loaded exactly as a third party's is: its default export is the factory and its
 * `optionsSchema` checks `backends.<name>`. This one list serves the loader, `backends`, `doctor`,
 * `ps`, `cache` and the config file's JSON Schema. The imports are lazy, so a command loads only
 * the backends it uses.
 */
export const builtinBackends = {
  docker: () => import("@claude-bottle/backend-docker"),
  smolmachines: () => import("@claude-bottle/backend-smolmachines"),
  podman: () => import("@claude-bottle/backend-podman"),
} satisfies Record<string, () => Promise<{ default: unknown; optionsSchema: unknown }>>;

export type BuiltinBackendName = keyof typeof builtinBackends;

export function isBuiltinBackend(name: string): name is BuiltinBackendName {
  return Object.hasOwn(builtinBackends, name);
}
