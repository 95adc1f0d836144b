/**
 * Bringing a restored table back into the live database in ONE transaction:
 * load the restored rows into a temporary table (streamed from the scratch
 * server), work out the plan, then either roll back (dry run, or a refusal) or
 * apply it (merge: insert missing rows; replace: make the table equal, with the
 * dependent rows the user included; new-table: a side table) and commit. Either
 * every change lands or none does.
 */
import { ident, type Client } from '../postgres/connect.ts';
import { FerryError, PostgresError } from '../util/errors.ts';
import { copyRows } from './copy.ts';
import { displayName } from './name.ts';
import { copiedColumns, planRestore, requireKey, qualified, refusal, restoredTableName, RESTORED, type Included, type Mode, type TableInfo, type TablePlan } from './plan.ts';

export interface ApplyOptions {
  mode: Mode;
  dryRun: boolean;
  yes: boolean;
  included: Included;
  /** For the side table's name (injected clock). */
  nowMs: number;
  /** How long to wait for the table lock before giving up (ms). */
  lockTimeoutMs?: number;
}

export interface ApplyResult {
  plan: TablePlan;
  applied: boolean;
  warnings: string[];
}

function keyEq(a: string, b: string, cols: string[]): string {
  return cols.map((c) => `${a}.${ident(c)} = ${b}.${ident(c)}`).join(' AND ');
}

function translate(e: unknown, table: string): FerryError {
  if (e instanceof FerryError) return e;
  const pe = e as { code?: string; message?: string; detail?: string; constraint?: string };
  const what: Record<string, string> = {
    '23503': 'a foreign key would be violated',
    '23505': 'a unique constraint would be violated',
    '55P03': 'the table is locked by another session (lock timeout)',
    '40P01': 'a deadlock with another session',
  };
  const why = (pe.code && what[pe.code]) ?? 'PostgreSQL refused';
  return new PostgresError(`restoring ${table} into the live database failed, nothing was changed: ${why}: ${pe.message ?? String(e)}${pe.detail ? ` (${pe.detail})` : ''}`, {
    hint: pe.code === '23503' ? 'restore the referenced table first, or use --mode new-table' : pe.code === '55P03' ? 'retry when the table is not busy' : 'run with --dry-run to see the plan',
  });
}

/**
 * Moves sequences owned by the table's integer columns past the largest value now
 * stored, so later inserts do not collide with restored rows. A sequence that cannot
 * be moved (no privilege) is reported, not fatal: the rows are what matters.
 */
async function advanceSequences(c: Client, target: string, t: TableInfo): Promise<string[]> {
  const warnings: string[] = [];
  for (const col of t.columns.filter((x) => /^(smallint|integer|bigint)$/.test(x.type))) {
    const r = await c.query<{ s: string | null }>('SELECT pg_get_serial_sequence($1, $2) AS s', [target, col.name]);
    const seq = r.rows[0]?.s;
    if (!seq) continue;
    await c.query('SAVEPOINT ferry_sequence');
    try {
      await c.query(`SELECT setval($1::regclass, m) FROM (SELECT max(${ident(col.name)}) AS m FROM ${target}) x WHERE m > COALESCE(pg_sequence_last_value($1::regclass), 0)`, [seq]);
      await c.query('RELEASE SAVEPOINT ferry_sequence');
    } catch (e) {
      await c.query('ROLLBACK TO SAVEPOINT ferry_sequence');
      warnings.push(`sequence ${seq} of column "${col.name}" was not moved past the restored values (${(e as Error).message}); later inserts may collide`);
    }
  }
  return warnings;
}

/**
 * Restores `t` from `scratch` (same table there) into `live`. Throws (after rolling
 * back) when the plan is refused; returns the plan, applied or not.
 */
export async function applyTableRestore(live: Client, scratch: Client, t: TableInfo, opts: ApplyOptions): Promise<ApplyResult> {
  const name = displayName(t.name);
  const liveQ = qualified(t.name);
  const cols = copiedColumns(t).map((c) => ident(c.name));
  const colList = cols.join(', ');
  const newName = opts.mode === 'new-table' ? restoredTableName(t.name.table, opts.nowMs) : undefined;
  requireKey(t, opts.mode);
  if (newName) {
    const exists = await live.query<{ r: string | null }>('SELECT to_regclass($1) AS r', [qualified({ schema: t.name.schema, table: newName })]);
    if (exists.rows[0].r) throw new FerryError(`table ${displayName({ schema: t.name.schema, table: newName })} already exists`, { hint: 'wait a second and run again, or drop it first' });
  }
  await live.query('BEGIN');
  try {
    await live.query(`CREATE TEMP TABLE ferry_restored ON COMMIT DROP AS SELECT ${colList} FROM ${liveQ} WITH NO DATA`);
    const restoredRows = await copyRows(scratch, `SELECT ${colList} FROM ${liveQ}`, live, RESTORED, cols);
    await live.query(`ANALYZE ${RESTORED}`);
    if (!opts.dryRun) {
      await live.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(opts.lockTimeoutMs ?? 30_000))}`);
      // Taken once the rows are loaded, so writers wait only for the plan and the change (readers never
      // wait): the plan stays true until commit.
      if (opts.mode !== 'new-table') await live.query(`LOCK TABLE ${liveQ} IN SHARE ROW EXCLUSIVE MODE`);
    }
    const { plan, effects } = await planRestore(live, t, opts.mode, restoredRows, newName);
    if (opts.dryRun) {
      await live.query('ROLLBACK');
      return { plan, applied: false, warnings: [] };
    }
    const why = refusal(plan, opts.included, opts.yes);
    if (why) throw why;
    const key = t.key?.columns ?? [];
    const missing = `NOT EXISTS (SELECT 1 FROM ${liveQ} l WHERE ${keyEq('l', 't', key)})`;
    let target = liveQ;
    if (opts.mode === 'merge') {
      await live.query(`INSERT INTO ${liveQ} (${colList}) OVERRIDING SYSTEM VALUE SELECT ${colList} FROM ${RESTORED} t WHERE ${missing}`);
    } else if (opts.mode === 'replace') {
      // Rows of included tables that RESTRICT / NO ACTION would block go first, deepest first.
      for (const e of [...effects].filter((x) => x.action === 'block').sort((a, b) => b.depth - a.depth)) {
        await live.query(`DELETE FROM ${e.qualified} x WHERE ${e.where}`);
      }
      await live.query(`DELETE FROM ${liveQ} l WHERE NOT EXISTS (SELECT 1 FROM ${RESTORED} t WHERE ${keyEq('t', 'l', key)})`);
      const settable = copiedColumns(t).filter((c) => c.identity !== 'a' && !key.includes(c.name));
      if (settable.length) {
        const rowText = (a: string) => `ROW(${cols.map((c) => `${a}.${c}`).join(', ')})::text`;
        await live.query(
          `UPDATE ${liveQ} l SET ${settable.map((c) => `${ident(c.name)} = t.${ident(c.name)}`).join(', ')} FROM ${RESTORED} t WHERE ${keyEq('t', 'l', key)} AND ${rowText('l')} IS DISTINCT FROM ${rowText('t')}`,
        );
      }
      await live.query(`INSERT INTO ${liveQ} (${colList}) OVERRIDING SYSTEM VALUE SELECT ${colList} FROM ${RESTORED} t WHERE ${missing}`);
    } else {
      target = qualified({ schema: t.name.schema, table: newName! });
      await live.query(`CREATE TABLE ${target} (LIKE ${liveQ} INCLUDING ALL)`);
      await live.query(`INSERT INTO ${target} (${colList}) OVERRIDING SYSTEM VALUE SELECT ${colList} FROM ${RESTORED}`);
    }
    const warnings = await advanceSequences(live, target, t);
    await live.query('COMMIT');
    return { plan, applied: true, warnings };
  } catch (e) {
    await live.query('ROLLBACK').catch(() => undefined);
    throw translate(e, name);
  }
}
