/** `ferry secrets snapshot | versions | restore` and `ferry git snapshot | restore`: secrets and config repositories. */
import type { Command } from './command.ts';

export const secretsCommands: Command[] = [];
