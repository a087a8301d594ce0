/**
 * The claude-bottle command line: parses argv with commander, runs one command, and turns every
 * outcome into an exit code (the agent's own for `run`, 2 for usage and config errors, 1 for
 * other failures, 128+N after a signal).
 */
import { BottleError } from "@claude-bottle/core/errors";
import { Command, CommanderError, Option } from "commander";
import { type Io, printJson } from "./io.js";

export const version: string = (await import("../package.json", { with: { type: "json" } })).default.version;

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function buildProgram(io: Io, setExitCode: (code: number) => void): Command {
  const program = new Command("claude-bottle")
    .description(
      "Run Claude Code with permission prompts off, safely: bottled in a container or microVM with only your project mounted, credentials kept outside and the network limited to an allow-list.",
    )
    .version(version, "-V, --version", "print claude-bottle's version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.stdout.write(text), writeErr: (text) => io.stderr.write(text) })
    .addHelpText(
      "after",
      `
Examples:
  claude-bottle run                              interactive Claude Code in this project
  claude-bottle run -- -p "fix the tests"        one prompt, headless; Claude Code's exit code is ours
  claude-bottle run --backend smolmachines       in a microVM instead of a container
  claude-bottle login                            keep your subscription token (or an API key) for bottles
  claude-bottle doctor                           check what works on this machine

Settings come from flags, then environment variables, then claude-bottle.config.json (searched
up from the project; used once you trust it with \`claude-bottle trust\`), then the user config;
\`claude-bottle config\` shows each value's source.`,
    );

  const backendOption = () =>
    new Option("-b, --backend <name>", "docker, smolmachines, or a backend package name");
  const workspaceOption = () =>
    new Option("-w, --workspace <dir>", "the project folder to mount (default: the current folder)");
  const imageOption = () =>
    new Option("--image <ref>", "use this image as it is instead of building the agent image");
  const jsonOption = () => new Option("--json", "print machine-readable JSON on stdout");
  const quietOption = () => new Option("-q, --quiet", "print no progress");

  const sessionCommand = (name: string, description: string) =>
    program
      .command(name)
      .description(description)
      .addOption(backendOption())
      .addOption(workspaceOption())
      .addOption(imageOption())
      .option(
        "--allow <host>",
        "also allow this host (or *.domain, or CIDR) for this run; repeatable",
        collect,
      )
      .option(
        "--allow-host-port <port>",
        "let the bottle reach the service on this machine's port PORT, as localhost:PORT inside (nothing else of this machine); repeatable",
        collect,
      )
      .option(
        "--publish <port[:hostport]>",
        "make the bottle's port PORT reachable from this machine on 127.0.0.1:HOSTPORT (default: the same port); repeatable",
        collect,
      )
      .option(
        "--import-host-settings",
        "copy ~/.claude/CLAUDE.md and settings.json into this project's bottle first",
      )
      .option(
        "--name <name>",
        "name the bottle claude-bottle-<project>-<name> (lower-case letters, digits, hyphens), to run several at once and stop one by name",
      )
      .option("--dry-run", "print the bottle that would run (secrets redacted) and exit")
      .addOption(quietOption());

  sessionCommand("run", "start Claude Code bottled in the project; arguments after -- go to Claude Code")
    .argument("[claude-args...]", "arguments for Claude Code, after --")
    .showHelpAfterError(
      '(arguments for Claude Code go after --, e.g. claude-bottle run -- -p "fix the tests")',
    )
    .addHelpText("after", '\nExample: claude-bottle run -- -p "summarise this repo" --output-format json')
    .action(async (claudeArgs: string[], options) => {
      const { runCommand } = await import("./commands/run.js");
      setExitCode(
        await runCommand(io, {
          ...options,
          command: ["claude", "--dangerously-skip-permissions", ...claudeArgs],
          headless: claudeArgs.includes("-p") || claudeArgs.includes("--print"),
        }),
      );
    });

  sessionCommand("shell", "open a shell (or run a command) in the project's bottle instead of Claude Code")
    .argument("[command...]", "the command to run, after -- (default: bash)")
    .action(async (command: string[], options) => {
      const { runCommand } = await import("./commands/run.js");
      setExitCode(await runCommand(io, { ...options, command: command.length > 0 ? command : ["bash"] }));
    });

  program
    .command("prepare")
    .description("build the agent image and convert it for the backend (cached), without running anything")
    .addOption(backendOption())
    .addOption(workspaceOption())
    .addOption(imageOption())
    .addOption(jsonOption())
    .addOption(quietOption())
    .action(async (options) => {
      const { prepareCommand } = await import("./commands/prepare.js");
      setExitCode(await prepareCommand(io, options));
    });

  program
    .command("login")
    .description(
      "store an API key or a `claude setup-token` token for bottles (from stdin, or a prompt that shows nothing)",
    )
    .addOption(
      new Option("--kind <kind>", "what the credential is, when its shape does not say").choices([
        "api-key",
        "oauth-token",
      ]),
    )
    .action(async (options) => {
      const { loginCommand } = await import("./commands/login.js");
      setExitCode(await loginCommand(io, options));
    });

  program
    .command("logout")
    .description("remove the credential `claude-bottle login` stored")
    .action(async (options) => {
      const { logoutCommand } = await import("./commands/login.js");
      setExitCode(await logoutCommand(io, options));
    });

  program
    .command("doctor")
    .description("check each backend: available, or why not and how to fix it")
    .addOption(workspaceOption())
    .addOption(jsonOption())
    .action(async (options) => {
      const { doctorCommand } = await import("./commands/doctor.js");
      setExitCode(await doctorCommand(io, options));
    });

  program
    .command("backends")
    .description("list the built-in backends and the one configured here")
    .addOption(workspaceOption())
    .addOption(jsonOption())
    .action(async (options) => {
      const { backendsCommand } = await import("./commands/backends.js");
      setExitCode(await backendsCommand(io, options));
    });

  const config = program
    .command("config")
    .description("show the resolved settings and where each value came from")
    .addOption(workspaceOption())
    .addOption(jsonOption())
    .action(async (options) => {
      const { configCommand } = await import("./commands/config.js");
      setExitCode(await configCommand(io, options));
    });
  config
    .command("schema")
    .description("print the config file's JSON Schema")
    .action(async () => {
      const { configJsonSchema } = await import("./config-json-schema.js");
      printJson(io, await configJsonSchema());
    });
  config
    .command("validate")
    .description("check a config file (default: the one that applies here); exit 2 when invalid")
    .argument("[file]", "the config file to check")
    .action(async (file: string | undefined) => {
      const { validateCommand } = await import("./commands/config.js");
      setExitCode(await validateCommand(io, file, config.opts()));
    });

  program
    .command("trust")
    .description(
      "trust this project's claude-bottle.config.json as it is now; a new or changed one is refused",
    )
    .argument("[file]", "the config file to trust (default: the one that applies here)")
    .addOption(workspaceOption())
    .option("--untrust", "forget the trust given to the file")
    .option("--show", "list the trusted config files and whether each is unchanged")
    .addHelpText(
      "after",
      "\nThe bottle can write files in your project, so a project config (which decides where your API key\ngoes, what the bottle reaches and what runs on this machine) is used only once you have read it and\ntrusted it here. Trust covers the file's content at its path, and the Dockerfile and CA file it names;\nafter any change, run this again.",
    )
    .action(async (file: string | undefined, options) => {
      const { trustCommand } = await import("./commands/trust.js");
      setExitCode(await trustCommand(io, file, options));
    });

  const cache = program
    .command("cache")
    .description("what backends keep in claude-bottle's cache (smolmachines: packed VM images)");
  cache
    .command("ls")
    .description("list cached artifacts: backend, id, image, size, created, last used")
    .addOption(jsonOption())
    .action(async (options) => {
      const { cacheListCommand } = await import("./commands/cache.js");
      setExitCode(await cacheListCommand(io, options));
    });
  cache
    .command("prune")
    .description("remove leftovers of interrupted work, and entries with --all or --older-than")
    .option("--all", "remove every cached artifact")
    .option("--older-than <duration>", "remove artifacts not used for this long, e.g. 7d or 12h")
    .addOption(jsonOption())
    .action(async (options) => {
      const { cachePruneCommand } = await import("./commands/cache.js");
      setExitCode(await cachePruneCommand(io, options));
    });

  program
    .command("ps")
    .description("list running bottles")
    .addOption(jsonOption())
    .action(async (options) => {
      const { psCommand } = await import("./commands/ps.js");
      setExitCode(await psCommand(io, options));
    });

  program
    .command("stop")
    .description("stop and remove bottles by name")
    .argument(
      "[names...]",
      "bottle names as `ps` shows them, or the --name given to a bottle of this project",
    )
    .addOption(
      new Option("-w, --workspace <dir>", "the project short names refer to (default: the current folder)"),
    )
    .option("--all", "stop every bottle claude-bottle started, of every project")
    .action(async (names: string[], options) => {
      const { stopCommand } = await import("./commands/ps.js");
      setExitCode(await stopCommand(io, names, options));
    });

  return program;
}

/** Run the CLI with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[], io: Io): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return exitCode;
  } catch (error) {
    return reportError(io, error);
  }
}

export function reportError(io: Io, error: unknown): number {
  if (error instanceof CommanderError) {
    // commander printed its own message; help and version are not errors.
    return error.exitCode === 0 ? 0 : 2;
  }
  if (BottleError.is(error)) {
    if (error.code === "ABORTED") return 130;
    const message = error.message.trim();
    const hint = error.hint ? (message.includes("\n") ? `\n  ${error.hint}` : `; ${error.hint}`) : "";
    if (error.code === "INVALID_CONFIG") {
      // One line per problem, each naming its file (or variable) and key.
      io.stderr.write(
        `${message
          .split("\n")
          .map((line) => `claude-bottle: ${line}`)
          .join("\n")}${hint}\n`,
      );
    } else {
      io.stderr.write(`claude-bottle: ${message}${hint}\n`);
    }
    return error.isUsageError ||
      error.code === "BACKEND_NOT_FOUND" ||
      error.code === "INVALID_BACKEND" ||
      error.code === "NOT_LOGGED_IN"
      ? 2
      : 1;
  }
  io.stderr.write(
    `claude-bottle: unexpected error: ${error instanceof Error ? (io.env.CLAUDE_BOTTLE_DEBUG ? error.stack : error.message) : String(error)}\n`,
  );
  return 1;
}
