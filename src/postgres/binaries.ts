/**
 * Finding PostgreSQL's programs and running them as the cluster's OS user.
 * Lookup: $FERRY_PG_BIN, else the highest /usr/lib/postgresql/<v>/bin (or the one
 * matching a wanted major version), else `pg_config --bindir`.
 * PostgreSQL refuses to run as root, so when Ferry runs as root, server programs
 * run as the owner of the data directory.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, PostgresError } from '../util/errors.ts';

export function pgBinDir(major?: number): string {
  const ok = (d: string | undefined): d is string => !!d && existsSync(join(d, 'postgres')) && existsSync(join(d, 'pg_ctl'));
  const env = process.env.FERRY_PG_BIN;
  if (env) {
    if (ok(env)) return env;
    throw new PostgresError(`FERRY_PG_BIN=${env} does not contain the PostgreSQL server programs (postgres, pg_ctl)`);
  }
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    if (major !== undefined && ok(join(root, String(major), 'bin'))) return join(root, String(major), 'bin');
    for (const v of versions) if (ok(join(root, v, 'bin'))) return join(root, v, 'bin');
  }
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (ok(d)) return d;
  } catch {
    /* not installed */
  }
  throw new PostgresError('PostgreSQL server programs not found', {
    hint: 'install them (`sudo apt-get install postgresql-15`) or set FERRY_PG_BIN to their directory',
  });
}

/** uid/gid to run PostgreSQL programs with for this data directory: its owner when we are root. */
export function runAs(dataDir: string): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const st = statSync(dataDir);
  if (st.uid === 0) throw new PostgresError(`${dataDir} is owned by root; PostgreSQL cannot run as root`, { hint: 'chown it to the database OS user (e.g. postgres)' });
  return { uid: st.uid, gid: st.gid };
}

/** The uid/gid of an OS user by name (e.g. `postgres`). */
export function osUser(name: string): { uid: number; gid: number } {
  try {
    // One `id` (through NSS, so directory users work too): "uid=108(postgres) gid=114(postgres) groups=…".
    const m = /^uid=(\d+)\S* gid=(\d+)/.exec(execFileSync('id', ['--', name], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'ignore'] }));
    if (!m) throw new Error('unexpected output of id');
    return { uid: Number(m[1]), gid: Number(m[2]) };
  } catch {
    throw new ConfigError(`no OS user named ${name}`, { hint: 'pass --owner USER naming the database OS user' });
  }
}

/** Runs a PostgreSQL program; rejects with its stderr on failure. */
export function runPg(bin: string, args: string[], opts: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      { encoding: 'utf8', maxBuffer: 64 << 20, uid: opts.uid, gid: opts.gid, env: opts.env ?? process.env, cwd: opts.cwd ?? '/', timeout: opts.timeoutMs ?? 0 },
      (err, stdout, stderr) => {
        if (err) reject(new PostgresError(`${bin.split('/').pop()} ${args.join(' ')} failed: ${(stderr || err.message).trim().split('\n').slice(-3).join(' ')}`));
        else resolve({ stdout, stderr });
      },
    );
  });
}
