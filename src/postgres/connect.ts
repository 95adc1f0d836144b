/**
 * Connections to PostgreSQL with node-postgres. Settings come from the libpq
 * environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE is not
 * read by node-postgres) or an explicit connection string.
 */
import type pg from 'pg';
import { connectClient, redact } from './conninfo.ts';

export type Client = pg.Client;

/** Connects to `conninfo` (a URL, read by node-postgres) or the libpq environment, optionally to another `database`. */
export function connect(conninfo?: string, database?: string): Promise<pg.Client> {
  const cfg: pg.ClientConfig = conninfo ? { connectionString: conninfo } : {};
  if (database) cfg.database = database;
  const where = conninfo ? redact(conninfo) : `${process.env.PGHOST ?? 'localhost'}:${process.env.PGPORT ?? '5432'}`;
  return connectClient(cfg, `PostgreSQL at ${where}`, 'set PGHOST/PGPORT/PGUSER/PGDATABASE (or pass a connection string) to reach the database');
}

export async function queryOne<T>(c: pg.Client, sql: string, params: unknown[] = []): Promise<T> {
  const r = await c.query(sql, params);
  return r.rows[0] as T;
}

/** Quotes an identifier for SQL (doubling embedded quotes). */
export function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
