#!/usr/bin/env node
import { Command } from "commander";
import pkg from "../package.json" with { type: "json" };

const program = new Command("claude-bottle")
  .description("Run Claude Code with permission prompts off, safely, in a sandbox")
  .version(pkg.version);
await program.parseAsync();
