/** `ferry pg export | pg exports | pg export get | pg export restore | pg export lifecycle`: compliance exports (pg_dump -Fc) in the repository, with a cold tier. */
import type { Command } from './command.ts';

export const exportCommands: Command[] = [];
