/**
 * Data fingerprints: per table, a row count and a content checksum, so a drill
 * can prove a restore holds the same data as the source had.
 *
 * How it is consistent with a snapshot: it is taken right after pg_backup_stop,
 * in one REPEATABLE READ transaction per database, and records
 * `pg_current_wal_lsn()` read inside the first of them. That LSN is at or after
 * the snapshot's stop LSN, so restoring the snapshot with recovery_target_lsn =
 * fingerprint.lsn (inclusive) reproduces what the transaction saw, up to commits
 * that were in flight at that instant. Taking it after the stop (rather than
 * while the files are read) also keeps the WAL its scan writes (hint bits set on
 * a checksummed cluster log full-page images) out of the WAL the snapshot must
 * wait for.
 *
 * The checksum is order-independent, so it needs no sort and no primary key: the
 * sum of a 64-bit hash of every row. Rows are hashed as records
 * (hash_record_extended, about twice as fast as going through text) when every
 * column type has an extended hash function, else as text (json, point, ...);
 * the method is recorded per table so a verifier hashes the same way.
 */
import type pg from 'pg';
import { connect, ident } from './connect.ts';
import type { TableFingerprint } from './meta.ts';

export async function databases(c: pg.Client): Promise<string[]> {
  const r = await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname");
  return r.rows.map((x) => x.datname);
}

/** Row count and checksum of one table, hashed as records where the column types allow it. */
export async function hashTable(c: pg.Client, qualified: string, recordHash: boolean): Promise<{ rows: number; sum: string; method: 'record' | 'text' }> {
  const run = async (expr: string) => (await c.query<{ rows: string; sum: string }>(`SELECT count(*)::bigint AS rows, coalesce(sum(${expr}), 0)::text AS sum FROM ONLY ${qualified} t`)).rows[0];
  if (recordHash) {
    // A column type without an extended hash function (json, point, ...) fails the
    // query; the savepoint keeps the transaction (and its snapshot) usable.
    await c.query('SAVEPOINT ferry_fp');
    try {
      const res = await run('hash_record_extended(t, 0)');
      await c.query('RELEASE SAVEPOINT ferry_fp');
      return { rows: Number(res.rows), sum: res.sum, method: 'record' };
    } catch (e) {
      await c.query('ROLLBACK TO SAVEPOINT ferry_fp');
      if (!/hash function/.test(String((e as Error).message))) throw e;
    }
  }
  const res = await run('hashtextextended(t::text, 0)');
  return { rows: Number(res.rows), sum: res.sum, method: 'text' };
}

export async function fingerprintDatabase(c: pg.Client, database: string): Promise<{ lsn: string; tables: TableFingerprint[] }> {
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const lsn = (await c.query<{ lsn: string }>('SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS lsn')).rows[0].lsn;
    const rels = await c.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence = 'p'
       ORDER BY 1, 2`,
    );
    const tables: TableFingerprint[] = [];
    const recordHash = Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v) >= 140000;
    for (const r of rels.rows) {
      const { rows, sum, method } = await hashTable(c, `${ident(r.schema)}.${ident(r.name)}`, recordHash);
      tables.push({ database, schema: r.schema, table: r.name, rows, checksum: sum, method });
    }
    return { lsn, tables };
  } finally {
    await c.query('COMMIT').catch(() => undefined);
  }
}

/** Fingerprints every database that accepts connections, through `conninfo` (or the PG* environment). */
export async function fingerprintCluster(conninfo?: string): Promise<{ lsn: string; takenAt: string; tables: TableFingerprint[] }> {
  const first = await connect(conninfo);
  const takenAt = new Date().toISOString();
  let lsn = '';
  const tables: TableFingerprint[] = [];
  try {
    for (const db of await databases(first)) {
      const c = await connect(conninfo, db);
      try {
        const fp = await fingerprintDatabase(c, db);
        lsn ||= fp.lsn;
        tables.push(...fp.tables);
      } finally {
        await c.end();
      }
    }
  } finally {
    await first.end();
  }
  return { lsn, takenAt, tables };
}

/** Differences between two fingerprints, as lines a person can read (empty when equal). */
export function compareFingerprints(a: TableFingerprint[], b: TableFingerprint[]): string[] {
  const key = (t: TableFingerprint) => `${t.database}.${t.schema}.${t.table}`;
  const mb = new Map(b.map((t) => [key(t), t]));
  const out: string[] = [];
  for (const t of a) {
    const o = mb.get(key(t));
    if (!o) out.push(`${key(t)}: missing`);
    else if (o.rows !== t.rows) out.push(`${key(t)}: ${o.rows} rows, expected ${t.rows}`);
    else if (o.checksum !== t.checksum) out.push(`${key(t)}: same row count (${t.rows}) but different content`);
    mb.delete(key(t));
  }
  for (const k of mb.keys()) out.push(`${k}: not in the source`);
  return out;
}
