/**
 * `pg export restore`: loads an export into a database with pg_restore, fed
 * through a pipe (no temporary copy of the dump), in one transaction that stops
 * at the first error, so a failed load leaves the target as it was.
 *
 * Refuses a target that already holds user relations unless told (`force`, which
 * also makes pg_restore drop the objects it recreates). The connection reaches
 * pg_restore through libpq's environment: a password is never on its command line.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type pg from 'pg';
import { pgBinDir } from '../postgres/binaries.ts';
import { clientConfigFromEnv, connectClient, conninfoEnv, parseConninfo, quoteConninfoValue } from '../postgres/conninfo.ts';
import { FerryError, PostgresError } from '../util/errors.ts';
import { exitText, watchChild } from './child.ts';
import type { ExportRef } from './meta.ts';
import { streamExport } from './read.ts';

export interface RestoreExportOptions {
  /** Load even when the target has user relations (pg_restore --clean --if-exists). */
  force?: boolean;
  /** Environment the connection string's missing parts come from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface RestoreExportReport {
  export: string;
  database: string;
  bytes: number;
  /** User relations the target held before (loaded over them with force). */
  existing: string[];
}

/** User relations (tables, views, sequences, …; not those of extensions) in the database the client is connected to. */
async function userRelations(client: pg.Client): Promise<string[]> {
  const r = await client.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1`,
  );
  return r.rows.map((x) => x.name);
}

export async function restoreExport(ref: ExportRef, conninfo: string, opts: RestoreExportOptions = {}): Promise<RestoreExportReport> {
  const env = conninfoEnv(parseConninfo(conninfo, { bareDbname: true }), opts.env ?? process.env);
  const client = await connectClient(
    clientConfigFromEnv(env),
    `the target database (${env.PGDATABASE ?? 'default database'} at ${env.PGHOST ?? 'localhost'}:${env.PGPORT ?? '5432'})`,
    'check --into (a database name, postgresql://… URL or "host=… dbname=…"); create the empty database first',
  );
  let database: string;
  let existing: string[];
  try {
    database = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0].db;
    existing = await userRelations(client);
  } finally {
    await client.end().catch(() => undefined);
  }
  if (existing.length && !opts.force) {
    const shown = existing.slice(0, 5).join(', ') + (existing.length > 5 ? `, … (${existing.length} relations)` : '');
    throw new FerryError(`database "${database}" is not empty (it holds ${shown}); export restore loads only into an empty database`, {
      hint: 'create an empty database (createdb NAME) and restore into it, or pass --force to replace the objects the export holds',
    });
  }

  const major = Number(/^(\d+)/.exec(ref.meta.pgDumpVersion)?.[1]) || undefined;
  const bin = join(pgBinDir(major), 'pg_restore');
  const args = ['--no-owner', '--exit-on-error', '--single-transaction', '--no-password', ...(opts.force ? ['--clean', '--if-exists'] : []), '--dbname', `dbname=${quoteConninfoValue(database)}`];
  const child = spawn(bin, args, { env, stdio: ['pipe', 'ignore', 'pipe'], cwd: '/' });
  const { exited, said } = watchChild(child, bin);
  child.stdin.on('error', () => undefined); // EPIPE when pg_restore stops early: its exit code tells why
  let gone = false;
  void exited.finally(() => (gone = true));
  let streamError: unknown;
  try {
    await streamExport(ref.repo, ref.manifest, async (b) => {
      if (gone || child.stdin.destroyed) throw new PostgresError('pg_restore stopped reading');
      if (!child.stdin.write(b)) await Promise.race([once(child.stdin, 'drain'), exited]);
    });
    child.stdin.end();
  } catch (e) {
    streamError = e;
    // Never let pg_restore commit a partial stream: kill it before it sees the end.
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  const exit = await exited;
  if (exit.code !== 0) {
    const msg = said();
    if (msg || !streamError) {
      throw new PostgresError(`pg_restore into database "${database}" failed (${exitText(exit)}): ${msg || 'no message'}`, {
        hint: 'nothing was loaded (one transaction); fix the cause and run it again',
      });
    }
  }
  if (streamError) throw streamError;
  return { export: ref.id, database, bytes: ref.meta.size, existing };
}
