/** Entry point of the full command line (dist/ferry.mjs): every command, each group loaded when used. */
import { loadCommands } from './commands.ts';
import { main } from './main.ts';

process.exitCode = await main(process.argv.slice(2), loadCommands);
