/** `ferry incident find`: transactions in archived WAL that removed or changed many rows. */
import type { Command } from './command.ts';

export const incidentCommands: Command[] = [];
