/**
 * Command definitions: each command is a typed value (name, summary, options,
 * handler) wired by main.ts, which parses argv, loads settings and reports
 * failures. Handlers stay thin: validate, call the domain, print.
 */
import type { ParseArgsConfig } from 'node:util';
import type { Context } from './context.ts';
import { UsageError } from '../util/errors.ts';
import { bytes } from '../util/format.ts';
import type { BackupProgress } from '../repo/backup.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export interface Command {
  /** Words that select the command, e.g. `files snapshot`. */
  name: string;
  aliases?: string[];
  summary: string;
  /** Usage after the command name, e.g. `DIR [--label L]`. */
  usage: string;
  description?: string;
  options?: OptionSpec;
  /** Inclusive bounds on positional arguments. */
  args?: [min: number, max: number];
  run(ctx: Context, args: ParsedArgs): Promise<number | void>;
}

export const GLOBAL_OPTIONS: OptionSpec = {
  repo: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
};

export const GLOBAL_HELP = `Global options:
  --repo URL       repository: a path, file://PATH or s3://BUCKET/PREFIX (env FERRY_REPO)
  --config FILE    ferry.yaml to read (env FERRY_CONFIG; default ./ferry.yaml if present)
  --json           machine-readable output on stdout
  -q, --quiet      no progress or summary lines
  -v, --verbose    log storage calls to stderr
  -h, --help       this help
Keys come from FERRY_KEY_FILE, FERRY_PASSWORD or FERRY_PASSWORD_FILE, never from arguments.`;

export function str(v: ParsedArgs['values'][string]): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function strs(v: ParsedArgs['values'][string]): string[] {
  if (Array.isArray(v)) return v;
  return typeof v === 'string' ? [v] : [];
}

/** Parses a non-negative number of seconds (flag value) into milliseconds. */
export function seconds(v: string | undefined, dflt: number, flag: string): number {
  if (v === undefined) return dflt * 1000;
  if (!/^\d+(\.\d+)?$/.test(v)) throw new UsageError(`${flag} takes a number of seconds, got "${v}"`);
  return Number(v) * 1000;
}

/** The terminal progress line of a snapshot. */
/** A zstd level from a flag or the configuration: a whole number from 0 (store) to 19. */
export function compressionLevel(v: string | number | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  if (!/^\d+$/.test(s) || Number(s) > 19) throw new UsageError(`${flag} must be a number from 0 to 19, got "${s}"`);
  return Number(s);
}

export function backupProgressLine(p: BackupProgress): string {
  return `files ${p.filesDone}/${p.filesTotal}  ${bytes(p.bytesDone)}/${bytes(p.bytesTotal)}  new ${bytes(p.newBytes)}  stored ${bytes(p.storedBytes)}`;
}

/** Asks on the terminal (stderr) before a destructive step; true only for "yes" or "y". */
export async function confirmOnTerminal(question: string): Promise<boolean> {
  // Loaded here: every command imports this module, few ever ask.
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} Type "yes" to go ahead: `)).trim().toLowerCase();
    return answer === 'yes' || answer === 'y';
  } finally {
    rl.close();
  }
}

/**
 * SIGINT and SIGTERM for a long-running command (a watch loop, a worker): the first one
 * aborts `signal`, so the command stops after what is in flight; a second one exits at once
 * (130). `dispose` puts the default handling back.
 */
export function onStopSignals(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const stop = () => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
    },
  };
}
