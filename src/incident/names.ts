/**
 * Names for the relation files and OIDs the WAL mentions, asked of the live
 * database (the libpq environment: PGHOST, PGPORT, PGUSER, PGDATABASE).
 *
 * WAL records name relations by `tablespace/database/relfilenode` only. Each
 * database is asked once with `pg_filenode_relation(tablespace, filenode)`, which
 * knows only the files relations have now: a file a later TRUNCATE, VACUUM FULL or
 * rewrite replaced, or one of a dropped table, resolves to nothing and is shown as
 * `rel spc/db/node` (find.ts).
 */
import type pg from 'pg';
import { connect } from '../postgres/connect.ts';
import { errorMessage } from '../util/errors.ts';
import { relKey, type RelFile } from './waldump.ts';

export interface RelName {
  schema: string;
  name: string;
  /** pg_class.relkind: r table, p partitioned, m materialized view, t toast, i index, ... */
  kind: string;
  /** The relation's OID (its first file has this number). */
  oid?: number;
}

export interface NameResolver {
  /** Names of relation files, keyed by `relKey`; files it cannot name are left out. */
  byFile(files: RelFile[]): Promise<Map<string, RelName>>;
  /** Names of relation OIDs, keyed by `db/oid`. */
  byOid(oids: { db: number; oid: number }[]): Promise<Map<string, RelName>>;
  /** Database names by OID (empty when unknown). */
  databases(): Promise<Map<number, string>>;
  close(): Promise<void>;
}

/** A resolver that names nothing (no live database). */
export const noNames: NameResolver = {
  byFile: async () => new Map(),
  byOid: async () => new Map(),
  databases: async () => new Map(),
  close: async () => undefined,
};

/**
 * Resolves through connections to the live cluster (`conninfo`, else the PG*
 * environment), one per database the WAL mentions. When the cluster cannot be reached, `warn` is told once and nothing
 * is named.
 */
export function liveResolver(warn: (line: string) => void, conninfo?: string): NameResolver {
  let databases: Promise<Map<number, string> | undefined> | undefined;
  const clients = new Map<number, Promise<pg.Client | undefined>>();
  let warned = false;
  const say = (line: string) => {
    if (!warned) warn(line);
    warned = true;
  };

  const dbNames = (): Promise<Map<number, string> | undefined> => {
    databases ??= (async () => {
      let c: pg.Client | undefined;
      try {
        c = await connect(conninfo);
        const r = await c.query<{ oid: number; datname: string }>('SELECT oid::int AS oid, datname FROM pg_database WHERE datallowconn');
        return new Map(r.rows.map((x) => [x.oid, x.datname]));
      } catch (e) {
        say(`cannot ask the live database for table names (${errorMessage(e)}); tables are shown as rel <tablespace>/<database>/<filenode>`);
        return undefined;
      } finally {
        await c?.end().catch(() => undefined);
      }
    })();
    return databases;
  };

  const client = (db: number): Promise<pg.Client | undefined> => {
    let p = clients.get(db);
    if (!p) {
      p = (async () => {
        const names = await dbNames();
        const name = names?.get(db);
        if (!name) return undefined;
        try {
          return await connect(conninfo, name);
        } catch (e) {
          say(`cannot connect to database ${name} for table names (${errorMessage(e)})`);
          return undefined;
        }
      })();
      clients.set(db, p);
    }
    return p;
  };

  const byDb = <T extends { db: number }>(items: T[]): Map<number, T[]> => {
    const m = new Map<number, T[]>();
    for (const i of items) {
      if (i.db === 0) continue; // shared catalogs
      const l = m.get(i.db) ?? [];
      l.push(i);
      m.set(i.db, l);
    }
    return m;
  };

  return {
    async byFile(files) {
      const out = new Map<string, RelName>();
      for (const [db, list] of byDb(files)) {
        const c = await client(db);
        if (!c) continue;
        const r = await c.query<{ spc: number; node: number; oid: number; schema: string; name: string; kind: string }>(
          `SELECT f.spc::int AS spc, f.node::int AS node, c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind
             FROM unnest($1::oid[], $2::oid[]) AS f(spc, node)
             JOIN pg_class c ON c.oid = pg_filenode_relation(f.spc, f.node)
             JOIN pg_namespace n ON n.oid = c.relnamespace`,
          [list.map((f) => f.spc), list.map((f) => f.node)],
        );
        for (const x of r.rows) out.set(relKey({ spc: x.spc, db, node: x.node }), { schema: x.schema, name: x.name, kind: x.kind, oid: x.oid });
      }
      return out;
    },
    async byOid(oids) {
      const out = new Map<string, RelName>();
      for (const [db, list] of byDb(oids)) {
        const c = await client(db);
        if (!c) continue;
        const r = await c.query<{ oid: number; schema: string; name: string; kind: string }>(
          `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = ANY($1::oid[])`,
          [list.map((o) => o.oid)],
        );
        for (const x of r.rows) out.set(`${db}/${x.oid}`, { schema: x.schema, name: x.name, kind: x.kind, oid: x.oid });
      }
      return out;
    },
    async databases() {
      return new Map(await dbNames());
    },
    async close() {
      for (const p of clients.values()) await (await p)?.end().catch(() => undefined);
    },
  };
}
