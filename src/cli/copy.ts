/** `ferry repo copy --to URL [--watch]` and `ferry status`: cross-region replication and its lag. */
import type { Command } from './command.ts';

export const copyCommands: Command[] = [];
