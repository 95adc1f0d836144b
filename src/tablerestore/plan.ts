/**
 * What a table restore would change, worked out inside the live database before
 * anything is changed: the live table's shape and key, the rows to insert, update
 * and delete against the restored copy (a temporary table), the rows of other
 * tables that foreign keys would delete, block or change (followed through
 * cascades), and rows to insert whose parent rows are missing. Every identifier
 * reaches SQL through ident(); values never do (they stay in the database).
 */
import { ident, type Client } from '../postgres/connect.ts';
import { FerryError, UsageError } from '../util/errors.ts';
import { displayName, type TableName } from './name.ts';

export type Mode = 'merge' | 'replace' | 'new-table';

export interface Column {
  name: string;
  type: string;
  /** attidentity: '' none, 'a' always, 'd' by default. */
  identity: string;
  /** attgenerated: '' none, 's' stored. Generated columns are never copied. */
  generated: string;
}

export interface TableInfo {
  name: TableName;
  oid: number;
  columns: Column[];
  /** The primary key, else a unique index on NOT NULL columns without predicate or expressions. */
  key?: { name: string; columns: string[] };
}

/** The temporary table the restored rows are loaded into (dropped at the end of the transaction). */
export const RESTORED = 'pg_temp.ferry_restored';

export function qualified(n: TableName): string {
  return `${ident(n.schema)}.${ident(n.table)}`;
}

/** Columns a restore writes: all but generated ones. */
export function copiedColumns(t: TableInfo): Column[] {
  return t.columns.filter((c) => c.generated === '');
}

/** Looks a table up; a missing schema or table is a FerryError (exit 1) naming the database. */
export async function describeTable(c: Client, name: TableName, where: string): Promise<TableInfo> {
  const ns = await c.query<{ oid: number }>('SELECT oid::int AS oid FROM pg_namespace WHERE nspname = $1', [name.schema]);
  if (!ns.rows[0]) throw new FerryError(`schema "${name.schema}" does not exist in ${where}`, { hint: 'check the name (SCHEMA.TABLE, case-sensitive inside double quotes)' });
  const rel = await c.query<{ oid: number; relkind: string }>('SELECT oid::int AS oid, relkind FROM pg_class WHERE relnamespace = $1 AND relname = $2', [ns.rows[0].oid, name.table]);
  const r = rel.rows[0];
  if (!r) throw new FerryError(`table ${displayName(name)} does not exist in ${where}`, { hint: 'check the name (SCHEMA.TABLE, case-sensitive inside double quotes)' });
  if (r.relkind !== 'r' && r.relkind !== 'p') throw new FerryError(`${displayName(name)} in ${where} is not a table (relkind ${r.relkind})`, { hint: 'only ordinary and partitioned tables can be restored' });
  const cols = await c.query<Column>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attidentity::text AS identity, attgenerated::text AS generated
       FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [r.oid],
  );
  const pk = await c.query<{ name: string; cols: string[] }>(
    `SELECT con.conname::text AS name,
            ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS cols
       FROM pg_constraint con WHERE con.conrelid = $1 AND con.contype = 'p'`,
    [r.oid],
  );
  let key = pk.rows[0] ? { name: pk.rows[0].name, columns: pk.rows[0].cols } : undefined;
  if (!key) {
    const uq = await c.query<{ name: string; cols: string[] }>(
      `SELECT i.indexrelid::regclass::text AS name,
              ARRAY(SELECT a.attname::text FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) AS cols
         FROM pg_index i
        WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
          AND NOT EXISTS (SELECT 1 FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) k(n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n WHERE NOT a.attnotnull)
        ORDER BY i.indnkeyatts, i.indexrelid LIMIT 1`,
      [r.oid],
    );
    if (uq.rows[0]) key = { name: uq.rows[0].name, columns: uq.rows[0].cols };
  }
  return { name, oid: r.oid, columns: cols.rows, ...(key ? { key } : {}) };
}

/** Merge and replace match rows by key: refuse a table without one. */
export function requireKey(t: TableInfo, mode: Mode): void {
  if ((mode === 'merge' || mode === 'replace') && !t.key) {
    throw new FerryError(`${displayName(t.name)} has no primary key (nor a unique index on NOT NULL columns), so rows cannot be matched for --mode ${mode}`, {
      hint: 'use --mode new-table and compare by hand',
    });
  }
}

/** Refuses a scratch table that lacks a column the live table has (the table's shape changed since then). */
export function checkSameShape(live: TableInfo, restored: TableInfo, where: string): void {
  const have = new Set(restored.columns.map((c) => c.name));
  const missing = copiedColumns(live).filter((c) => !have.has(c.name));
  if (missing.length) {
    throw new FerryError(`${displayName(live.name)} in ${where} has no column${missing.length > 1 ? 's' : ''} ${missing.map((c) => `"${c.name}"`).join(', ')}: the table changed since then`, {
      hint: 'choose a restore point after the change, or restore with --mode new-table into a table of that shape by hand',
    });
  }
}

/** The side table `TABLE_restored_YYYYMMDDHHMMSS` (UTC), shortening TABLE so the name fits in 63 bytes. */
export function restoredTableName(table: string, nowMs: number): string {
  const d = new Date(nowMs);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const suffix = `_restored_${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
  let base = table;
  while (Buffer.byteLength(base + suffix) > 63) base = base.slice(0, -1);
  return base + suffix;
}

export type DependentAction = 'delete' | 'block' | 'set null' | 'set default' | 'update';

export interface DependentEffect {
  /** The dependent table, as SCHEMA.TABLE. */
  table: string;
  constraint: string;
  /** The table whose rows go away or change. */
  via: string;
  /** What PostgreSQL would do to these rows: delete (ON DELETE CASCADE), block (RESTRICT / NO ACTION), set null/default, update (ON UPDATE CASCADE). */
  action: DependentAction;
  rows: number;
  /** 1 for tables referencing the restored table, 2 for tables referencing those, ... */
  depth: number;
}

/** An effect with the SQL condition that selects its rows (alias `x`), for explicit deletes. */
interface EffectWithWhere extends DependentEffect {
  where: string;
  qualified: string;
}

export interface MissingParents {
  constraint: string;
  /** The referenced table lacking the rows. */
  table: string;
  rows: number;
}

export interface TablePlan {
  table: string;
  mode: Mode;
  restoredRows: number;
  insert: number;
  update: number;
  delete: number;
  unchanged: number;
  dependents: DependentEffect[];
  missingParents: MissingParents[];
  newTable?: string;
}

interface ForeignKey {
  name: string;
  child: TableName;
  childOid: number;
  parent: TableName;
  parentOid: number;
  cols: string[];
  refcols: string[];
  deltype: string;
  updtype: string;
}

async function foreignKeys(c: Client, side: 'confrelid' | 'conrelid', oid: number): Promise<ForeignKey[]> {
  const r = await c.query<{ name: string; cs: string; ct: string; coid: number; ps: string; pt: string; poid: number; cols: string[]; refcols: string[]; deltype: string; updtype: string }>(
    `SELECT con.conname::text AS name, cn.nspname::text AS cs, cc.relname::text AS ct, cc.oid::int AS coid,
            pn.nspname::text AS ps, pc.relname::text AS pt, pc.oid::int AS poid,
            ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS cols,
            ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) AS refcols,
            con.confdeltype::text AS deltype, con.confupdtype::text AS updtype
       FROM pg_constraint con
       JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
       JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
      WHERE con.contype = 'f' AND con.${side} = $1 AND con.conparentid = 0
      ORDER BY cn.nspname, cc.relname, con.conname`,
    [oid],
  );
  return r.rows.map((x) => ({
    name: x.name,
    child: { schema: x.cs, table: x.ct },
    childOid: x.coid,
    parent: { schema: x.ps, table: x.pt },
    parentOid: x.poid,
    cols: x.cols,
    refcols: x.refcols,
    deltype: x.deltype,
    updtype: x.updtype,
  }));
}

function actionOf(code: string, on: 'delete' | 'update'): DependentAction {
  if (code === 'c') return on === 'delete' ? 'delete' : 'update';
  if (code === 'n') return 'set null';
  if (code === 'd') return 'set default';
  return 'block';
}

function eq(a: string, b: string, cols: string[], bcols = cols): string {
  return cols.map((col, i) => `${a}.${ident(col)} = ${b}.${ident(bcols[i])}`).join(' AND ');
}

function rowText(alias: string, cols: string[]): string {
  return `ROW(${cols.map((col) => `${alias}.${ident(col)}`).join(', ')})::text`;
}

async function count(c: Client, sql: string): Promise<number> {
  const r = await c.query<{ n: string }>(sql);
  return Number(r.rows[0].n);
}

/**
 * Rows of other tables that replacing `t` would delete, block or change: first the
 * tables referencing `t` (for its rows that disappear, and for referenced values an
 * update changes), then, through cascades and blocked rows, the tables referencing
 * those. A table already on the path is not followed again (cycles, self-references).
 */
async function dependentsOf(c: Client, t: TableInfo): Promise<EffectWithWhere[]> {
  const key = t.key!.columns;
  const out: EffectWithWhere[] = [];
  const walk = async (parentOid: number, parent: TableName, gone: (fk: ForeignKey) => { on: 'delete' | 'update'; pred: (alias: string) => string }[], depth: number, path: Set<number>): Promise<void> => {
    if (depth > 8) return;
    for (const fk of await foreignKeys(c, 'confrelid', parentOid)) {
      if (path.has(fk.childOid)) continue;
      const pa = `p${depth}`;
      for (const g of gone(fk)) {
        const where = (alias: string) =>
          `${fk.cols.map((col) => `${alias}.${ident(col)} IS NOT NULL`).join(' AND ')} AND EXISTS (SELECT 1 FROM ${qualified(parent)} ${pa} WHERE ${eq(pa, alias, fk.refcols, fk.cols)} AND ${g.pred(pa)})`;
        const rows = await count(c, `SELECT count(*) AS n FROM ${qualified(fk.child)} x WHERE ${where('x')}`);
        if (rows === 0) continue;
        const action = actionOf(g.on === 'delete' ? fk.deltype : fk.updtype, g.on);
        out.push({ table: displayName(fk.child), constraint: fk.name, via: displayName(parent), action, rows, depth, where: where('x'), qualified: qualified(fk.child) });
        if (action === 'delete' || action === 'block') {
          await walk(fk.childOid, fk.child, () => [{ on: 'delete', pred: where }], depth + 1, new Set([...path, fk.childOid]));
        }
      }
    }
  };
  const deleted = (alias: string) => `NOT EXISTS (SELECT 1 FROM ${RESTORED} t WHERE ${eq('t', alias, key)})`;
  await walk(
    t.oid,
    t.name,
    (fk) => {
      const sameAsKey = fk.refcols.length === key.length && fk.refcols.every((col) => key.includes(col));
      const changed = (alias: string) => `EXISTS (SELECT 1 FROM ${RESTORED} t WHERE ${eq('t', alias, key)} AND ROW(${fk.refcols.map((col) => `t.${ident(col)}`).join(', ')}) IS DISTINCT FROM ROW(${fk.refcols.map((col) => `${alias}.${ident(col)}`).join(', ')}))`;
      return [{ on: 'delete' as const, pred: deleted }, ...(sameAsKey ? [] : [{ on: 'update' as const, pred: changed }])];
    },
    1,
    new Set([t.oid]),
  );
  return out;
}

/** Rows to insert whose referenced parent rows do not exist in the live database (the insert would fail). */
async function missingParentsOf(c: Client, t: TableInfo): Promise<MissingParents[]> {
  const key = t.key!.columns;
  const out: MissingParents[] = [];
  for (const fk of await foreignKeys(c, 'conrelid', t.oid)) {
    if (fk.parentOid === t.oid) continue; // self-references are satisfied by the restored rows themselves
    const rows = await count(
      c,
      `SELECT count(*) AS n FROM ${RESTORED} t
        WHERE NOT EXISTS (SELECT 1 FROM ${qualified(t.name)} l WHERE ${eq('l', 't', key)})
          AND ${fk.cols.map((col) => `t.${ident(col)} IS NOT NULL`).join(' AND ')}
          AND NOT EXISTS (SELECT 1 FROM ${qualified(fk.parent)} p WHERE ${eq('p', 't', fk.refcols, fk.cols)})`,
    );
    if (rows > 0) out.push({ constraint: fk.name, table: displayName(fk.parent), rows });
  }
  return out;
}

export interface PlanDetail {
  plan: TablePlan;
  /** Dependent effects with the SQL that selects their rows, for apply. */
  effects: EffectWithWhere[];
}

/** Computes the plan with the restored rows already loaded into RESTORED (same transaction). */
export async function planRestore(c: Client, t: TableInfo, mode: Mode, restoredRows: number, newTable?: string): Promise<PlanDetail> {
  const base: TablePlan = { table: displayName(t.name), mode, restoredRows, insert: 0, update: 0, delete: 0, unchanged: 0, dependents: [], missingParents: [] };
  if (mode === 'new-table') return { plan: { ...base, insert: restoredRows, ...(newTable ? { newTable: displayName({ schema: t.name.schema, table: newTable }) } : {}) }, effects: [] };
  const key = t.key!.columns;
  const live = qualified(t.name);
  const cols = copiedColumns(t).map((c) => c.name);
  const insert = await count(c, `SELECT count(*) AS n FROM ${RESTORED} t WHERE NOT EXISTS (SELECT 1 FROM ${live} l WHERE ${eq('l', 't', key)})`);
  const missingParents = await missingParentsOf(c, t);
  if (mode === 'merge') {
    return { plan: { ...base, insert, unchanged: restoredRows - insert, missingParents }, effects: [] };
  }
  const del = await count(c, `SELECT count(*) AS n FROM ${live} l WHERE NOT EXISTS (SELECT 1 FROM ${RESTORED} t WHERE ${eq('t', 'l', key)})`);
  const update = await count(c, `SELECT count(*) AS n FROM ${live} l JOIN ${RESTORED} t ON ${eq('t', 'l', key)} WHERE ${rowText('l', cols)} IS DISTINCT FROM ${rowText('t', cols)}`);
  const effects = await dependentsOf(c, t);
  const dependents = effects.map(({ where: _w, qualified: _q, ...e }) => e);
  return { plan: { ...base, insert, update, delete: del, unchanged: restoredRows - insert - update, dependents, missingParents }, effects };
}

/** Which dependent tables a replace may touch: all (--cascade) or those named (--include-dependents). */
export type Included = 'all' | Set<string>;

/**
 * Why a plan must not be applied, or undefined when it may: rows to insert whose
 * parents are missing, dependent rows not included, and (for a replace that deletes
 * or updates rows) no --yes.
 */
export function refusal(plan: TablePlan, included: Included, yes: boolean): FerryError | undefined {
  if (plan.missingParents.length) {
    const list = plan.missingParents.map((m) => `${m.rows} row(s) reference ${m.table} rows that do not exist (${m.constraint})`).join('; ');
    return new FerryError(`restoring ${plan.table} would fail: ${list}`, {
      hint: `restore ${[...new Set(plan.missingParents.map((m) => m.table))].join(', ')} first (e.g. with --mode merge), then this table`,
    });
  }
  const notIncluded = plan.dependents.filter((d) => included !== 'all' && !included.has(d.table));
  if (notIncluded.length) {
    const verb: Record<DependentAction, string> = { delete: 'be deleted (ON DELETE CASCADE)', block: 'block it (RESTRICT / NO ACTION)', 'set null': 'be set to NULL', 'set default': 'be set to their default', update: 'be changed (ON UPDATE CASCADE)' };
    const list = notIncluded.map((d) => `${d.rows} row(s) of ${d.table} would ${verb[d.action]} via ${d.constraint}`).join('; ');
    const tables = [...new Set(notIncluded.map((d) => d.table))];
    return new FerryError(`replacing ${plan.table} is refused because dependent rows would be lost or changed: ${list}`, {
      hint: `restore with --mode merge or --mode new-table instead, or accept the loss with --include-dependents ${tables.join(',')} (or --cascade)`,
    });
  }
  if (plan.mode === 'replace' && (plan.delete > 0 || plan.update > 0) && !yes) {
    return new UsageError(`replacing ${plan.table} would delete ${plan.delete} and update ${plan.update} row(s); add --yes to do it`, { hint: 'run with --dry-run to see the plan first' });
  }
  return undefined;
}

export { type EffectWithWhere };
