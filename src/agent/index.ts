/**
 * The agent (`machine-id start|init|keypair`): joins, keeps the bot's identity renewed and
 * writes credentials other programs use. The entry point registers `agentCommands()`.
 */

import { registerBuiltins } from "./builtins.ts";

export { agentCommands, startCommand, initCommand } from "./commands.ts";
export { Agent, botSettings, IDENTITY_TASK, type AgentOptions, type Service } from "./agent.ts";
export { start, loadStartConfig, runServices, type StartFlags } from "./start.ts";
export { initDestinationDir, initDirectory, type InitOptions, type InitResult } from "./init.ts";
export { Bot, BotStore, registerJoinMethod, joinMethod, type BotIdentity, type JoinContext, type JoinMethod } from "./bot/index.ts";
export { createDestination, registerDestination, DirectoryDestination, directoryDestination, MemoryDestination, parseAcl, getAcls, aclGrantsNamedReaders, type Destination, type FileData } from "./destinations/index.ts";
export { registerOutput, buildOutput, renderIdentityFiles, renderSshConfig, IDENTITY_FILES, type Output, type OutputBuilder, type OutputDeps } from "./outputs/index.ts";
export { AgentMetrics, HealthRegistry, diagHandler, startDiagServer, type Readiness } from "./diag/index.ts";
export { registerBuiltins } from "./builtins.ts";

// Whoever enters through this module (the entry point, tests) gets the built-in join
// methods, destinations and outputs; an Agent registers them itself too.
registerBuiltins();
