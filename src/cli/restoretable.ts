/** `ferry pg restore-table`: bring one table back from a snapshot, a point in time or an export. */
import { connect, type Client } from '../postgres/connect.ts';
import { connectConninfo } from '../postgres/conninfo.ts';
import { parseTargetTime } from '../postgres/plan.ts';
import { applyTableRestore } from '../tablerestore/apply.ts';
import { displayName, parseTableName } from '../tablerestore/name.ts';
import { checkSameShape, describeTable, refusal, requireKey, type DependentEffect, type Included, type Mode, type TablePlan } from '../tablerestore/plan.ts';
import { checkSource, openExportScratch, openPhysicalScratch, type Scratch, type TableSource } from '../tablerestore/source.ts';
import { resolveExport } from '../export/meta.ts';
import { FerryError, UsageError } from '../util/errors.ts';
import { seconds, str, strs, type Command } from './command.ts';
import { commandClock } from './expire.ts';
import { openTiers } from './export.ts';
import { ferryCommand, restoreEnv } from './pg.ts';

const MODES: Mode[] = ['replace', 'merge', 'new-table'];

function sourceFrom(values: Record<string, unknown>): TableSource {
  const given = (['from-snapshot', 'from-time', 'from-export'] as const).filter((k) => values[k] !== undefined);
  if (given.length !== 1) {
    throw new UsageError(given.length ? `give one source, not ${given.map((g) => `--${g}`).join(' and ')}` : 'pg restore-table needs a source: --from-snapshot ID, --from-time T or --from-export ID');
  }
  const v = String(values[given[0]]);
  if (given[0] === 'from-time') return { kind: 'time', text: v, time: parseTargetTime(v) };
  if (!v) throw new UsageError(`--${given[0]} needs an id`);
  return given[0] === 'from-snapshot' ? { kind: 'snapshot', id: v } : { kind: 'export', id: v };
}

function describeSource(s: TableSource): string {
  if (s.kind === 'time') return `time ${s.text}`;
  return `${s.kind} ${s.id}`;
}

function effectLine(d: DependentEffect): string {
  const what: Record<DependentEffect['action'], string> = {
    delete: 'deleted (ON DELETE CASCADE)',
    block: 'blocking (RESTRICT / NO ACTION)',
    'set null': 'set to NULL',
    'set default': 'set to default',
    update: 'changed (ON UPDATE CASCADE)',
  };
  return `  ${d.table}: ${d.rows} row(s) ${what[d.action]} via ${d.constraint} (references ${d.via})`;
}

function planText(p: TablePlan, dryRun: boolean, applied: boolean): string {
  const verb = dryRun ? 'would' : applied ? '' : 'would';
  const lines: string[] = [];
  const head = `${p.table} (${p.mode}): ${p.restoredRows} row(s) restored`;
  if (p.mode === 'new-table') {
    lines.push(`${head}; ${dryRun ? `would create ${p.newTable ?? 'a side table'} with` : `created ${p.newTable} with`} ${p.insert} row(s)`);
  } else if (verb) {
    lines.push(`${head}; would insert ${p.insert}, update ${p.update}, delete ${p.delete} (${p.unchanged} unchanged)`);
  } else {
    lines.push(`${head}; inserted ${p.insert}, updated ${p.update}, deleted ${p.delete} (${p.unchanged} unchanged)`);
  }
  for (const d of p.dependents) lines.push(effectLine(d));
  for (const m of p.missingParents) lines.push(`  ${m.rows} row(s) to insert reference ${m.table} rows that do not exist (${m.constraint})`);
  if (dryRun) lines.push('dry run: nothing was changed');
  return lines.join('\n');
}

const restoreTable: Command = {
  name: 'pg restore-table',
  summary: 'restore one table from a snapshot, a point in time or an export into the live database (merge, replace or new table)',
  usage:
    'SCHEMA.TABLE (--from-snapshot ID | --from-time T | --from-export ID) --mode (replace | merge | new-table)\n' +
    '       [--into CONNINFO] [--dry-run] [--yes] [--include-dependents T1,T2 | --cascade] [--scratch-dir DIR] [--cold URL] [--lock-timeout S] [--json]',
  description:
    'Restores the source into a scratch PostgreSQL server in a temporary directory (--scratch-dir; unix socket only,\n' +
    'always stopped and removed afterwards): a snapshot to its consistent point, a time by PITR, an export with\n' +
    'pg_restore (the cold tier too: --cold URL or FERRY_COLD_REPO). Then brings the table into the live database\n' +
    '(the libpq environment PGHOST, PGPORT, PGUSER, PGDATABASE, or --into CONNINFO) in one transaction:\n' +
    '  merge      insert the rows missing from the live table (matched by primary key); existing rows are untouched\n' +
    '  replace    make the live table equal to the restored one (delete, update, insert). Refused while rows of other\n' +
    '             tables would be deleted, blocked or changed through foreign keys, unless those tables are named with\n' +
    '             --include-dependents SCHEMA.TABLE,... (or all of them with --cascade). Needs --yes when it deletes\n' +
    '             or updates rows.\n' +
    '  new-table  create TABLE_restored_YYYYMMDDHHMMSS (UTC) beside the live table and fill it\n' +
    '--dry-run prints what would be inserted, updated and deleted (and the dependent rows) and changes nothing.\n' +
    '--lock-timeout S bounds the wait for the table lock (default 30); --timeout S the scratch recovery (default 3600).\n' +
    'Details: docs/restore-table.md',
  args: [1, 1],
  options: {
    'from-snapshot': { type: 'string' },
    'from-time': { type: 'string' },
    'from-export': { type: 'string' },
    into: { type: 'string' },
    mode: { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean' },
    'include-dependents': { type: 'string', multiple: true },
    cascade: { type: 'boolean' },
    'scratch-dir': { type: 'string' },
    cold: { type: 'string' },
    asset: { type: 'string' },
    'lock-timeout': { type: 'string' },
    timeout: { type: 'string' },
  },
  async run(ctx, { values, positionals }) {
    // 1. everything that can be refused without touching anything
    const name = parseTableName(positionals[0]);
    const mode = str(values.mode) as Mode | undefined;
    if (!mode) throw new UsageError('pg restore-table needs --mode replace, --mode merge or --mode new-table');
    if (!MODES.includes(mode)) throw new UsageError(`--mode is one of ${MODES.join(', ')}, got "${mode}"`);
    const source = sourceFrom(values);
    const includes = strs(values['include-dependents']).flatMap((s) => s.split(',')).filter((s) => s.trim());
    if (includes.length && values.cascade) throw new UsageError('give --include-dependents or --cascade, not both');
    if ((includes.length || values.cascade) && mode !== 'replace') throw new UsageError('--include-dependents and --cascade apply to --mode replace only');
    const included: Included = values.cascade ? 'all' : new Set(includes.map((s) => displayName(parseTableName(s.trim()))));
    const dryRun = !!values['dry-run'];
    const lockTimeoutMs = seconds(str(values['lock-timeout']), 30, '--lock-timeout');
    const timeoutMs = seconds(str(values.timeout), 3600, '--timeout');
    const into = str(values.into);
    const clock = commandClock(ctx);

    const live = await connectConninfo(into, ctx.env, 'the live database', 'set PGHOST/PGPORT/PGUSER/PGDATABASE or pass --into CONNINFO (the password in PGPASSWORD or ~/.pgpass)');
    let scratch: Scratch | undefined;
    let scratchClient: Client | undefined;
    let closer: (() => Promise<void>) | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      void (async () => {
        process.stderr.write(`ferry: ${sig}: stopping the scratch server and removing it\n`);
        await scratchClient?.end().catch(() => undefined);
        await closer?.();
        process.exit(130);
      })();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const db = (await live.query<{ db: string }>('SELECT current_database() AS db')).rows[0].db;
      const liveWhere = `the live database "${db}"`;
      const table = await describeTable(live, name, liveWhere);
      requireKey(table, mode);
      const repo = await ctx.repo();
      const common = {
        asset: str(values.asset),
        parentDir: str(values['scratch-dir']),
        ferryCommand: ferryCommand(),
        restoreEnv: restoreEnv(ctx),
        timeoutMs,
        onCloser: (c: () => Promise<void>) => (closer = c),
        onStep: (s: string) => {
          if (!ctx.json && !ctx.opts.quiet) process.stderr.write(`ferry: ${s}\n`);
        },
      };
      // 2. the scratch server
      if (source.kind === 'export') {
        // The cold tier as `pg export` finds it: --cold > FERRY_COLD_REPO > repository.cold_url.
        const t = await openTiers(ctx, values, false);
        try {
          await resolveExport(t.tiers, source.id);
          scratch = await openExportScratch(repo, source.id, name, { ...common, ...(t.tiers.cold ? { cold: t.tiers.cold } : {}) });
        } finally {
          await t.close().catch(() => undefined);
        }
      } else {
        await checkSource(repo, source, str(values.asset));
        scratch = await openPhysicalScratch(repo, source, common);
      }
      const at = scratch.origin.reached?.lastTransactionTime ?? scratch.origin.exportTime;
      const sdb = scratch.database ?? db;
      const scratchWhere = `the restored database "${sdb}" (${describeSource(source)}${at ? `, ${scratch.origin.exportTime ? 'taken' : 'last transaction'} at ${at}` : ''})`;
      scratchClient = await connect(scratch.conninfo(sdb)).catch((e: Error) => {
        if (!/does not exist/.test(e.message)) throw e;
        throw new FerryError(`database "${sdb}" does not exist in the restored copy (${describeSource(source)})`, { hint: 'connect to a database that existed then (--into or PGDATABASE)' });
      });
      const restored = await describeTable(scratchClient, name, scratchWhere);
      checkSameShape(table, restored, scratchWhere);

      // 3. into the live database, one transaction
      const result = await applyTableRestore(live, scratchClient, table, { mode, dryRun, yes: !!values.yes, included, nowMs: clock.now(), lockTimeoutMs });
      for (const w of result.warnings) ctx.warn(w);
      // A dry run also says whether the real run would be refused (dependents, missing parents).
      const refused = dryRun ? refusal(result.plan, included, true)?.message : undefined;
      ctx.out(
        { ...result.plan, dryRun, applied: result.applied, ...(refused ? { wouldRefuse: refused } : {}), source: { ...source, ...scratch.origin } },
        () => planText(result.plan, dryRun, result.applied) + (refused ? `\nwithout --dry-run this would be refused: ${refused}` : ''),
      );
    } finally {
      await scratchClient?.end().catch(() => undefined);
      await live.end().catch(() => undefined);
      await (closer ?? scratch?.close)?.();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};

export const restoreTableCommands: Command[] = [restoreTable];
