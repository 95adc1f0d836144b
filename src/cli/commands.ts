/** Every command the CLI knows, in help order. */
import type { Command } from './command.ts';
import { repoCommands } from './repo.ts';
import { filesCommands } from './files.ts';
import { demoCommands } from './demo.ts';
import { pgCommands } from './pg.ts';

export const commands: Command[] = [...repoCommands, ...filesCommands, ...pgCommands, ...demoCommands];
