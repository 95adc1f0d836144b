/** `ferry incident find`: transactions in archived WAL that removed or changed many rows. */
import { DEFAULT_MIN_ROWS, DEFAULT_WINDOW_MS, OPS, findIncidents, qualifyTable, type IncidentOp, type TableChange } from '../incident/find.ts';
import { liveResolver, noNames } from '../incident/names.ts';
import { parseTargetTime } from '../postgres/plan.ts';
import { parseTimeline } from '../postgres/wal.ts';
import { FerryError, UsageError } from '../util/errors.ts';
import { table } from '../util/format.ts';
import { str, type Command } from './command.ts';
import { commandClock } from './expire.ts';

function time(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseTargetTime(v);
  } catch (e) {
    const why = e instanceof FerryError ? e.message : String(e);
    throw new UsageError(`${flag}: ${why}; use ISO 8601 with a zone, e.g. 2026-11-24T03:15:00Z`);
  }
}

const find: Command = {
  name: 'incident find',
  summary: 'list transactions in archived WAL that deleted, updated, truncated or dropped many rows',
  usage: '[--table SCHEMA.TABLE] [--since T] [--until T] [--op delete|update|truncate|drop] [--min-rows N] [--timeline TLI] [--no-names] [--json]',
  description:
    'Decodes archived WAL with pg_waldump and reports committed transactions with, per table, the rows they\n' +
    `deleted or updated (at least --min-rows, default ${DEFAULT_MIN_ROWS}) and any TRUNCATE or DROP, cascades included.\n` +
    'Reads the WAL archived since --since (default: the last 24 hours) up to the first commit after --until.\n' +
    'Table names come from the live database (PGHOST, PGPORT, PGUSER, PGDATABASE); what it cannot name is shown\n' +
    'as rel <tablespace>/<database>/<filenode>. Proposes `ferry pg restore --before-xid` for the worst transaction.',
  options: {
    table: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    op: { type: 'string' },
    'min-rows': { type: 'string' },
    timeline: { type: 'string' },
    'no-names': { type: 'boolean' },
  },
  async run(ctx, { values }) {
    const op = str(values.op);
    if (op !== undefined && !(OPS as readonly string[]).includes(op)) throw new UsageError(`--op takes one of ${OPS.join(', ')}, got "${op}"`);
    const minText = str(values['min-rows']);
    if (minText !== undefined && !/^\d+$/.test(minText)) throw new UsageError(`--min-rows takes a whole number, got "${minText}"`);
    const since = time('--since', str(values.since));
    const until = time('--until', str(values.until));
    if (since !== undefined && until !== undefined && until < since) throw new UsageError(`--until (${str(values.until)}) is before --since (${str(values.since)})`);
    const tableName = str(values.table) !== undefined ? qualifyTable(str(values.table)!) : undefined;
    const timeline = str(values.timeline) !== undefined ? parseTimeline(str(values.timeline)!) : undefined;
    const now = commandClock(ctx).now();
    const from = since ?? (until ?? now) - DEFAULT_WINDOW_MS;

    const repo = await ctx.repo();
    const names = values['no-names'] ? noNames : liveResolver((l) => ctx.warn(l));
    let result;
    try {
      result = await findIncidents(repo, {
        filter: { table: tableName, op: op as IncidentOp | undefined, since: from, until, minRows: minText !== undefined ? Number(minText) : DEFAULT_MIN_ROWS },
        since: from,
        until,
        timeline,
        names,
        warn: (l) => ctx.warn(l),
        onProgress: (done, total) => ctx.progress.update(`decoded ${done}/${total} WAL segments`),
      });
    } finally {
      await names.close();
      ctx.progress.done();
    }
    ctx.out(result, () => {
      const s = result.scanned;
      const lines = [
        s.segments
          ? `scanned ${s.segments} WAL segment${s.segments === 1 ? '' : 's'} (${s.firstSegment} .. ${s.lastSegment}) for commits since ${s.since}${s.until ? ` until ${s.until}` : ''}: ${s.commits} commits`
          : `no WAL archived since ${s.since}`,
      ];
      if (!result.transactions.length) {
        lines.push('no transaction matches');
        return lines.join('\n');
      }
      // The database is shown only when the changes span more than one.
      const dbs = new Set(result.transactions.flatMap((t) => t.tables.map((c) => c.database ?? '')));
      const tableName = (c: TableChange) => (dbs.size > 1 && c.database ? `${c.database}: ${c.name}` : c.name);
      const rows: string[][] = [];
      for (const t of result.transactions) {
        t.tables.forEach((c, i) => {
          const change = [tableName(c), c.op, c.rows === null ? 'all' : String(c.rows)];
          rows.push(i === 0 ? [String(t.xid), t.commitTime, t.lsn, ...change] : ['', '', '', ...change]);
        });
      }
      lines.push('', table(['XID', 'COMMIT TIME', 'COMMIT LSN', 'TABLE', 'OP', 'ROWS'], rows));
      if (result.proposal) {
        lines.push('', `worst: ${result.proposal.reason}`, 'to restore to just before it:', `  ${result.proposal.command}`);
      }
      return lines.join('\n');
    });
  },
};

export const incidentCommands: Command[] = [find];
