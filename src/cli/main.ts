/**
 * The command line's driver: finds the command, parses its options, resolves
 * settings, runs it, and turns failures into one clear line and an exit code
 * (0 ok, 1 failure, 2 bad usage or config). Its entries are ferry.ts (every
 * command) and ferry-wal.ts (the per-segment WAL commands); bin/ferry picks one.
 */
import { parseArgs } from 'node:util';
import { resolveSettings } from '../config/load.ts';
import { FerryError, UsageError } from '../util/errors.ts';
import { GLOBAL_HELP, GLOBAL_OPTIONS, type Command } from './command.ts';
import { Context } from './context.ts';

function findCommand(commands: Command[], argv: string[]): { cmd?: Command; rest: string[] } {
  let best: { cmd: Command; words: number } | undefined;
  for (const cmd of commands) {
    for (const name of [cmd.name, ...(cmd.aliases ?? [])]) {
      const words = name.split(' ');
      if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.words)) best = { cmd, words: words.length };
    }
  }
  return best ? { cmd: best.cmd, rest: argv.slice(best.words) } : { rest: argv };
}

export function overview(commands: Command[]): string {
  const groups = new Map<string, Command[]>();
  for (const c of commands) {
    const g = c.name.split(' ')[0];
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(c);
  }
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  const lines = ['Ferry: backup, point-in-time recovery and disaster recovery for PostgreSQL, files and secrets.', '', 'Usage: ferry COMMAND [options]', '', 'Commands:'];
  for (const cs of groups.values()) for (const c of cs) lines.push(`  ${c.name.padEnd(width)}${c.summary}`);
  lines.push('', GLOBAL_HELP, '', 'Run `ferry COMMAND --help` for the options of one command.');
  return lines.join('\n');
}

function commandHelp(cmd: Command): string {
  const lines = [`Usage: ferry ${cmd.name} ${cmd.usage}`.trimEnd(), '', cmd.summary];
  if (cmd.description) lines.push('', cmd.description);
  lines.push('', GLOBAL_HELP);
  return lines.join('\n');
}

/**
 * Moves global options given before the command (`ferry -v pg restore ...`, `ferry --repo R
 * snapshots`) to after it, where the command's parser reads them. Stops at the first word
 * that is not a global option, so a command's own options keep their place.
 */
export function hoistGlobalOptions(argv: string[]): string[] {
  const moved: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i].startsWith('-') && argv[i] !== '-' && argv[i] !== '--') {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') ? arg.slice(2, eq < 0 ? undefined : eq) : Object.keys(GLOBAL_OPTIONS).find((k) => GLOBAL_OPTIONS[k].short === arg.slice(1));
    const spec = name === undefined ? undefined : GLOBAL_OPTIONS[name];
    if (!spec || name === 'help') break;
    const takesValue = spec.type === 'string' && eq < 0;
    moved.push(...argv.slice(i, i + (takesValue ? 2 : 1)));
    i += takesValue ? 2 : 1;
  }
  return moved.length ? [...argv.slice(i), ...moved] : argv;
}

/**
 * Runs one command line. `load` gives the commands whose first word is `first` (all
 * commands without it): commands.ts's `loadCommands` for the full command line.
 */
export async function main(args: string[], load: (first?: string) => Promise<Command[]>): Promise<number> {
  const argv = hoistGlobalOptions(args);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(overview(await load()) + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === 'version') {
    process.stdout.write('ferry 0.1.0 (repository format 1)\n');
    return 0;
  }
  const { cmd, rest } = findCommand(await load(argv[0]), argv);
  let ctx: Context | undefined;
  try {
    if (!cmd) throw new UsageError(`unknown command "${argv.slice(0, 2).join(' ')}"`, { hint: 'run `ferry --help` for the list of commands' });
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...(cmd.options ?? {}) }, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError(`${(e as Error).message.replace(/\. To specify a positional.*$/s, '')} (ferry ${cmd.name})`, { hint: `run \`ferry ${cmd.name} --help\`` });
    }
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    if (values.help) {
      process.stdout.write(commandHelp(cmd) + '\n');
      return 0;
    }
    const [min, max] = cmd.args ?? [0, 0];
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      throw new UsageError(`ferry ${cmd.name} takes ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${parsed.positionals.length}`, {
        hint: `usage: ferry ${cmd.name} ${cmd.usage}`,
      });
    }
    const settings = await resolveSettings({ flags: { repo: values.repo as string | undefined, config: values.config as string | undefined }, env: process.env, cwd: process.cwd() });
    ctx = new Context(settings, { json: !!values.json, quiet: !!values.quiet, verbose: !!values.verbose });
    const code = await cmd.run(ctx, { values, positionals: parsed.positionals });
    return code ?? 0;
  } catch (e) {
    ctx?.progress.done();
    return report(e);
  } finally {
    await ctx?.close().catch(() => undefined);
  }
}

export function report(e: unknown): number {
  if (e instanceof FerryError) {
    process.stderr.write(`ferry: error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
    if (process.env.FERRY_DEBUG && e.stack) process.stderr.write(e.stack + '\n');
    return e.exitCode;
  }
  const err = e as NodeJS.ErrnoException;
  process.stderr.write(`ferry: internal error: ${err?.message ?? String(e)}\n`);
  if (process.env.FERRY_DEBUG && err?.stack) process.stderr.write(err.stack + '\n');
  else process.stderr.write('hint: set FERRY_DEBUG=1 for the stack trace, and report it\n');
  return 1;
}
