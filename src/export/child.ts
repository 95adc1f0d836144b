/**
 * pg_dump and pg_restore run as children of an export: when they end, and why in
 * their own words (the last lines of stderr), the same way for both.
 */
import type { ChildProcess } from 'node:child_process';
import { PostgresError } from '../util/errors.ts';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WatchedChild {
  /** Settles when the child has closed; rejects (a PostgresError) only when `bin` could not be run. Never an unhandled rejection. */
  exited: Promise<ChildExit>;
  /** The last three lines of its stderr (of the last 8 KiB kept), on one line; '' when it said nothing. */
  said(): string;
}

/** Watches `child`, spawned from `bin` with stderr piped. Call before anything is awaited, so no output or exit is missed. */
export function watchChild(child: ChildProcess, bin: string): WatchedChild {
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  const exited = new Promise<ChildExit>((resolve, reject) => {
    child.on('error', (e) => reject(new PostgresError(`cannot run ${bin}: ${e.message}`)));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  exited.catch(() => undefined);
  return { exited, said: () => stderr.trim().split('\n').filter(Boolean).slice(-3).join(' ') };
}

/** `exit code 1` or `signal SIGKILL`. */
export function exitText(e: ChildExit): string {
  return e.code !== null ? `exit code ${e.code}` : `signal ${e.signal}`;
}
