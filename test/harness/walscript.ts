/**
 * The shell entries of async WAL mode (bin/ferry-wal-push, bin/ferry-wal-fetch) tested on
 * their own: a copy of the script beside a stand-in `ferry` that records how it was called,
 * so a call the script answered itself is one the stand-in never saw.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './cli.ts';
import { defaultSpool } from '../../src/postgres/wal-async.ts';

export interface ScriptWithStandIn {
  /** Runs the script: its exit code, and the stand-in's arguments (undefined when the script did not delegate). */
  run(args: string[], env: Record<string, string>, cwd?: string): { code: number | null; delegated?: string[] };
}

/**
 * A copy of bin/<script> (and the bin/ferry-wal.sh it sources) in DIR/bin beside a stand-in `ferry` that records its arguments in
 * DIR/calls and fails (exit 3) like a call that did not happen.
 */
export function scriptWithStandIn(dir: string, script: string): ScriptWithStandIn {
  const bin = join(dir, 'bin');
  const calls = join(dir, 'calls');
  mkdirSync(bin);
  copyFileSync(join(ROOT, 'bin', script), join(bin, script));
  copyFileSync(join(ROOT, 'bin', 'ferry-wal.sh'), join(bin, 'ferry-wal.sh'));
  writeFileSync(join(bin, 'ferry'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${calls}\nexit 3\n`);
  chmodSync(join(bin, 'ferry'), 0o755);
  return {
    run(args, env, cwd = dir) {
      rmSync(calls, { force: true });
      const r = spawnSync(join(bin, script), args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, cwd, encoding: 'utf8' });
      return { code: r.status, delegated: existsSync(calls) ? readFileSync(calls, 'utf8').trimEnd().split('\n') : undefined };
    },
  };
}

/** `defaultSpool(repo, dir)` as Ferry computes it with TMPDIR set to `tmpdir` plus a trailing slash (os.tmpdir() drops it; the scripts must too). */
export function defaultSpoolUnder(tmpdir: string, repo: string, dir: string): string {
  const prev = process.env.TMPDIR;
  process.env.TMPDIR = `${tmpdir}/`;
  try {
    return defaultSpool(repo, dir);
  } finally {
    if (prev === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = prev;
  }
}
