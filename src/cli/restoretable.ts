/** `ferry pg restore-table`: bring one table back from a snapshot, a point in time or an export. */
import type { Command } from './command.ts';

export const restoreTableCommands: Command[] = [];
