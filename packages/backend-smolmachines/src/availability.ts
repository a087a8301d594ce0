/**
 * Can smolvm boot machines here? For `claude-bottle doctor`: hardware virtualization the user can
 * use (read-write /dev/kvm on Linux, Apple Silicon on macOS), then smolvm itself and its version.
 * Each failure names its fix.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { arch, platform } from "node:process";
import { type Availability, BottleError } from "@claude-bottle/core";
import { credentialBindingVersion, keepsCredentialOutside } from "./machine-plan.js";

/**
 * The machine as the backend sees it: the platform, and whether hardware virtualization can be
 * opened. The backend's `host` option replaces it, e.g. with the view of a smolvm that needs no KVM.
 */
export interface HostView {
  platform: NodeJS.Platform;
  arch: string;
  /** fs.promises.access */
  access(path: string, mode: number): Promise<void>;
}

export interface AvailabilityProbe extends HostView {
  /** smolvm's version, e.g. "1.22.0"; throws when smolvm is missing or broken. */
  smolvmVersion(): Promise<string>;
}

/** This process's platform and architecture, and the real /dev/kvm. */
export const systemHost: HostView = { platform, arch, access };

export function systemProbe(
  smolvmVersion: () => Promise<string>,
  host: HostView = systemHost,
): AvailabilityProbe {
  const { platform, arch, access } = host;
  return { platform, arch, access, smolvmVersion };
}

const dockerFallback = "or use --backend docker";

export async function checkSmolmachinesAvailability(probe: AvailabilityProbe): Promise<Availability> {
  const host = await checkHost(probe);
  if (host) return { available: false, ...host };
  try {
    const version = await probe.smolvmVersion();
    return { available: true, version: `smolvm ${version} (${credentialNote(version)})` };
  } catch (error) {
    const bottle = BottleError.is(error) ? error : undefined;
    return {
      available: false,
      reason: bottle?.message ?? String(error),
      fix: `${bottle?.hint ?? "install smolvm from https://github.com/smol-machines/smolvm"}, ${dockerFallback}`,
    };
  }
}

/** What `doctor` says about the API key: whether this smolvm keeps it outside the VM. */
function credentialNote(version: string): string {
  return keepsCredentialOutside(version)
    ? "keeps the API key outside the VM"
    : `cannot keep the API key outside the VM, which needs smolvm ${credentialBindingVersion} or later: runs with a key only with credentials.passthrough`;
}

async function checkHost(probe: AvailabilityProbe): Promise<{ reason: string; fix: string } | undefined> {
  switch (probe.platform) {
    case "linux": {
      try {
        await probe.access("/dev/kvm", constants.R_OK | constants.W_OK);
        return undefined;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          return {
            reason: "/dev/kvm does not exist: this machine offers no hardware virtualization (KVM)",
            fix: `enable virtualization (Intel VT-x or AMD-V) in the firmware and load the kvm module (sudo modprobe kvm_intel or kvm_amd); on a cloud or nested VM, choose one with nested virtualization; ${dockerFallback}`,
          };
        }
        return {
          reason: `/dev/kvm exists but this user cannot read and write it (${code ?? String(error)})`,
          fix: `add yourself to the kvm group (sudo usermod -aG kvm "$USER", then log in again); ${dockerFallback}`,
        };
      }
    }
    case "darwin":
      if (probe.arch === "arm64") return undefined;
      return {
        reason: `smolvm needs Apple Silicon on macOS; this Mac is ${probe.arch}`,
        fix: `run on an Apple Silicon Mac, ${dockerFallback}`,
      };
    case "win32":
      // smolvm uses the Windows Hypervisor Platform; it reports a disabled one itself when it starts.
      return undefined;
    default:
      return {
        reason: `smolvm does not run on ${probe.platform}`,
        fix: `use Linux with KVM, macOS on Apple Silicon or Windows, ${dockerFallback}`,
      };
  }
}
