/**
 * Who owns a leftover: the claude-bottle process that made something it must also remove (a
 * registry container, a VM), identified by host, boot and pid. When that process was killed (kill
 * -9, a crash, a reboot) nothing removes the thing; the next claude-bottle sweeps what belongs to an
 * owner that is certainly gone.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";

export interface ProcessOwner {
  /** The owner's pid. */
  pid: number;
  /** The kernel's id of the boot the owner ran in (Linux); a pid from another boot is someone else. */
  bootId?: string;
  /** The host the owner runs on: a shared folder or a remote engine must not judge another host's pids. */
  host: string;
}

/** How to judge owners; injectable so the rules are unit-tested without killing processes. */
export interface OwnerProbe {
  host: string;
  bootId: string | undefined;
  /** Whether a process with this pid exists. */
  isAlive(pid: number): boolean;
}

/** The kernel's id of this boot (Linux); undefined elsewhere. */
export async function currentBootId(): Promise<string | undefined> {
  try {
    return (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** This process as an owner. */
export async function currentOwner(): Promise<ProcessOwner> {
  const bootId = await currentBootId();
  return { pid: process.pid, ...(bootId && { bootId }), host: hostname() };
}

export async function systemOwnerProbe(): Promise<OwnerProbe> {
  return { host: hostname(), bootId: await currentBootId(), isAlive: processExists };
}

/**
 * Whether `owner` is certainly gone: on this host, and either from another boot or a pid that no
 * longer exists. An owner on another host is never judged dead.
 */
export function ownerIsDead(owner: ProcessOwner, probe: OwnerProbe): boolean {
  if (owner.host !== probe.host) return false;
  if (owner.bootId && probe.bootId && owner.bootId !== probe.bootId) return true;
  return !probe.isAlive(owner.pid);
}

export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's process.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
