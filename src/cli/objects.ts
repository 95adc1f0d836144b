/** `ferry objects snapshot | versions | restore | configure`: object files in S3-compatible buckets and directories. */
import type { Command } from './command.ts';

export const objectsCommands: Command[] = [];
