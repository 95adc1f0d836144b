/**
 * Connections to PostgreSQL with node-postgres. Settings come from the libpq
 * environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE is not
 * read by node-postgres) or an explicit connection string.
 */
import pg from 'pg';
import { PostgresError } from '../util/errors.ts';

export type Client = pg.Client;

export async function connect(conninfo?: string, database?: string): Promise<pg.Client> {
  const cfg: pg.ClientConfig = conninfo ? { connectionString: conninfo } : {};
  if (database) cfg.database = database;
  const client = new pg.Client(cfg);
  try {
    await client.connect();
  } catch (e) {
    const where = conninfo ?? `${process.env.PGHOST ?? 'localhost'}:${process.env.PGPORT ?? '5432'}`;
    throw new PostgresError(`cannot connect to PostgreSQL at ${where}: ${(e as Error).message}`, {
      hint: 'set PGHOST/PGPORT/PGUSER/PGDATABASE (or pass a connection string) to reach the database',
    });
  }
  client.on('error', () => undefined); // reported by the query that fails
  return client;
}

export async function queryOne<T>(c: pg.Client, sql: string, params: unknown[] = []): Promise<T> {
  const r = await c.query(sql, params);
  return r.rows[0] as T;
}

/** Quotes an identifier for SQL (doubling embedded quotes). */
export function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
