/**
 * What the Docker CLI's output says about progress, for a progress display: the build step running
 * now, and how far a transfer (pull, push) has got. It reads the output line by line as the engine
 * prints it without a terminal, which is how the image engine runs it:
 *
 * - the legacy builder: `Step 5/9 : RUN npm install …`, the RUN's own output, ` ---> 1a2b3c`;
 * - BuildKit's plain progress: `#7 [4/9] RUN npm install …`, `#7 12.3 added 3 packages`,
 *   `#4 sha256:1f3e… 9.44MB / 28.23MB 0.5s`, `#7 DONE 14.2s`, with lines of several steps
 *   interleaved and a step's header repeated when its output resumes;
 * - layer status lines of pulls and pushes (`1f3e46996e29: Pull complete`, `…: Pushed`): without a
 *   terminal Docker leaves out the byte counts, so the count of finished layers is the progress.
 *
 * Docker offers no machine-readable form of these (`--progress=rawjson` exists only with buildx, and
 * push has none), so this reads the text; anything it does not recognise is plain output.
 */

export type EngineOutputEvent =
  /** A build step started, normalised for both builders: `[4/9] RUN npm install …`. */
  | { kind: "step"; text: string }
  /** How far a transfer has got: `downloading 9.44MB / 28.23MB`, `pushed 3 of 5 layers`. */
  | { kind: "transfer"; text: string }
  /** A line of the current step's own output (a RUN command's, for instance). */
  | { kind: "output"; text: string };

const legacyStep = /^Step (\d+)\/(\d+) : (.*)$/;
const legacyNoise =
  /^( ---> |Removing intermediate container|Successfully (built|tagged)|Sending build context to Docker daemon|DEPRECATED: The legacy builder|\s+(Install the buildx component|BuildKit is currently disabled|https:\/\/docs\.docker\.com\/go\/buildx))/;
const buildkitLine = /^#(\d+) (.*)$/;
const buildkitHeader = /^\[([^\]]+)\] (.*)$/;
const buildkitNumbered = /^(?:(\S+) )?(\d+)\/(\d+)$/;
const buildkitDownload = /^sha256:[0-9a-f]+ (\S+) \/ (\S+)(?: [\d.]+s)?( done)?$/;
const buildkitExtract = /^extracting sha256:[0-9a-f]+/;
const buildkitTimestamped = /^\d+\.\d+ (.*)$/;
const buildkitStatus = /^(DONE [\d.]+s|CACHED|ERROR\b.*|CANCELED.*|\.\.\.)$/;
const layerStatus =
  /^([0-9a-f]{12}): (Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists|Preparing|Pushing|Pushed|Layer already exists|Mounted from .+|Retrying.*)$/;

const finished = new Set(["Pull complete", "Already exists", "Pushed", "Layer already exists"]);

/**
 * A reader for one command's output (keep one per build or push: it remembers which steps and
 * layers it has seen). Returns what a line means for a progress display, or nothing for lines that
 * mean nothing to a user (`DONE 0.1s`, ` ---> Using cache`).
 */
export function engineOutputReader(): (line: string) => EngineOutputEvent | undefined {
  const announced = new Set<string>();
  const layers = new Map<string, boolean>();
  let direction: "pull" | "push" | undefined;

  return (raw) => {
    const line = raw.replace(/\s+$/, "");
    if (line.trim() === "") return undefined;

    const step = legacyStep.exec(line);
    if (step) return { kind: "step", text: `[${step[1]}/${step[2]}] ${squeeze(step[3]!)}` };
    if (legacyNoise.test(line)) return undefined;

    const layer = layerStatus.exec(line);
    if (layer) {
      const [, id, status] = layer as unknown as [string, string, string];
      if (/^(Preparing|Pushing|Pushed|Layer already exists|Mounted from)/.test(status)) direction = "push";
      else if (/^(Pulling|Downloading|Download complete|Extracting|Pull complete|Verifying)/.test(status))
        direction = "pull";
      layers.set(id, (layers.get(id) ?? false) || finished.has(status) || status.startsWith("Mounted from"));
      const done = [...layers.values()].filter(Boolean).length;
      const verb = direction === "push" ? "pushed" : "pulled";
      return { kind: "transfer", text: `${verb} ${done} of ${layers.size} layers` };
    }

    const buildkit = buildkitLine.exec(line);
    if (buildkit) {
      const [, vertex, rest] = buildkit as unknown as [string, string, string];
      if (vertex === "0") return undefined; // "#0 building with "default" instance using docker driver"
      if (buildkitStatus.test(rest)) return undefined;
      if (!announced.has(vertex)) {
        announced.add(vertex);
        return { kind: "step", text: buildkitStepText(rest) };
      }
      if (buildkitHeader.test(rest)) return undefined; // a header repeated when its output resumes
      const download = buildkitDownload.exec(rest);
      if (download) {
        return {
          kind: "transfer",
          text: download[3] ? `downloaded ${download[2]}` : `downloading ${download[1]} / ${download[2]}`,
        };
      }
      if (buildkitExtract.test(rest)) return { kind: "transfer", text: "extracting" };
      const output = buildkitTimestamped.exec(rest);
      return { kind: "output", text: (output ? output[1]! : rest).trim() };
    }

    return { kind: "output", text: line.trim() };
  };
}

/** `[4/9] RUN …` or `[build 2/4] COPY …` as such, `[internal] load metadata for …` without the tag. */
function buildkitStepText(rest: string): string {
  const header = buildkitHeader.exec(rest);
  if (!header) return squeeze(rest);
  const [, tag, what] = header as unknown as [string, string, string];
  const numbered = buildkitNumbered.exec(tag);
  if (numbered)
    return `[${numbered[1] ? `${numbered[1]} ` : ""}${numbered[2]}/${numbered[3]}] ${squeeze(what)}`;
  return squeeze(what);
}

/** Runs of spaces (left where a Dockerfile continued a line) become one. */
function squeeze(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/**
 * What an engine CLI's error output says went wrong, where a caller acts on the reason rather than
 * just reporting it. Docker's and Podman's wordings are both here, and this is the only place that
 * reads an engine's stderr for meaning; the CLIs have no error codes to go by (`run` exits 125 for
 * every failure of the engine itself).
 */
export type EngineFailure =
  /** No engine answers (the daemon is down, the socket is wrong). */
  | "unreachable"
  /** The container named does not exist. */
  | "no-such-container"
  /** The container exists but is not running (stopped, or stopping), so nothing can `exec` in it. */
  | "not-running"
  /** The engine is removing the container already (an `--rm` container that just exited). */
  | "removal-in-progress"
  /** Another container has the name asked for. */
  | "name-in-use"
  /** The volume named does not exist. */
  | "no-such-volume"
  /**
   * Another `run` created the named volume at the same moment (Podman: two runs that mount a volume
   * that does not exist yet race to create it, and one fails; Docker creates it once).
   */
  | "volume-exists"
  /** A container still holds the volume. */
  | "volume-in-use"
  /** A host port to publish on is taken. */
  | "port-in-use"
  /** An image is neither here nor to be had from its registry (unknown, denied, unreachable). */
  | "image-unavailable";

const failures: readonly [EngineFailure, RegExp][] = [
  [
    "unreachable",
    /Cannot connect to the Docker daemon|error during connect|Is the docker daemon running|Cannot connect to Podman|unable to connect to Podman/i,
  ],
  ["no-such-container", /No such container|no container with (name or )?ID .* found/i],
  ["removal-in-progress", /removal of container .* is already in progress/i],
  ["not-running", /is not running|stopped state|container state improper/i],
  ["name-in-use", /container name .* is already in use/i],
  ["no-such-volume", /no such volume/i],
  ["volume-exists", /creating named volume .*already exists|volume with name .* already exists/i],
  ["volume-in-use", /volume is in use|is being used by the following container/i],
  ["port-in-use", /already allocated|address already in use/i],
  [
    "image-unavailable",
    /Unable to find image|pull access denied|requested access to the resource is denied|manifest unknown|not found: manifest|repository does not exist|image not known|name unknown|no such host|dial tcp|timeout|registry-1\.docker\.io/i,
  ],
];

/** The reason an engine CLI's error output gives, if it is one a caller acts on. */
export function engineFailure(output: string): EngineFailure | undefined {
  return failures.find(([, pattern]) => pattern.test(output))?.[0];
}
