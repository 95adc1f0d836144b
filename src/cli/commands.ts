/** Every command the CLI knows, in help order. */
import type { Command } from './command.ts';
import { repoCommands } from './repo.ts';
import { filesCommands } from './files.ts';
import { demoCommands } from './demo.ts';
import { walCommands } from './wal.ts';
import { pgCommands } from './pg.ts';
import { retentionCommands } from './pgverify.ts';

export const commands: Command[] = [...repoCommands, ...filesCommands, ...pgCommands, ...walCommands, ...retentionCommands, ...demoCommands];
