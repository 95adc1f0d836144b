/** `ferry pg export | pg exports | pg export get | pg export restore | pg export lifecycle`: compliance exports (pg_dump -Fc) in the repository, with a cold tier. */
import { credentialsFrom } from '../config/load.ts';
import { deleteExport, moveToCold, openColdTier, type MoveReport } from '../export/cold.ts';
import { planLifecycle, RUNBOOK_LIFECYCLE, type LifecycleDecision, type LifecycleRules } from '../export/lifecycle.ts';
import { listExports, resolveExport, type ExportRef, type Tiers } from '../export/meta.ts';
import { writeExportFile } from '../export/read.ts';
import { restoreExport } from '../export/restore.ts';
import { takeExport } from '../export/take.ts';
import { withLock } from '../repo/lock.ts';
import { prune } from '../repo/prune.ts';
import { Repository } from '../repo/repository.ts';
import { recordedRun } from '../repo/runs.ts';
import { openStorage } from '../storage/open.ts';
import type { Clock } from '../util/clock.ts';
import { ConfigError, UsageError } from '../util/errors.ts';
import { bytes, duration, table } from '../util/format.ts';
import { confirmOnTerminal, seconds, str, strs, type Command, type OptionSpec, type ParsedArgs } from './command.ts';
import type { Context } from './context.ts';
import { commandClock } from './expire.ts';

const COLD_OPTION: OptionSpec = { cold: { type: 'string' } };

/**
 * The repository, on the command clock: FERRY_NOW (tests that run bin/ferry) moves
 * "now" to that time, from which it runs on, so durations stay real.
 */
async function hotRepo(ctx: Context): Promise<Repository> {
  if (!ctx.env.FERRY_NOW) return ctx.repo();
  const base = commandClock(ctx).now();
  const started = ctx.clock.now();
  const clock: Clock = { now: () => base + (ctx.clock.now() - started), random: (n) => ctx.clock.random(n) };
  return Repository.open(ctx.storage(), credentialsFrom(ctx.settings, ctx.env), clock);
}

/** The cold tier's URL: --cold > FERRY_COLD_REPO > ferry.yaml repository.cold_url. */
function coldUrl(ctx: Context, values: ParsedArgs['values']): string | undefined {
  return str(values.cold) ?? (ctx.env.FERRY_COLD_REPO || undefined) ?? ctx.settings.file.repository?.cold_url;
}

export interface OpenTiers {
  tiers: Tiers;
  url?: string;
  close(): Promise<void>;
}

/** Opens both tiers (also for `pg restore-table --from-export`); the cold one only when configured and, unless opened to `write` (moves), when it exists. */
export async function openTiers(ctx: Context, values: ParsedArgs['values'], write: boolean): Promise<OpenTiers> {
  const hot = await hotRepo(ctx);
  const url = coldUrl(ctx, values);
  if (!url) return { tiers: { hot }, close: async () => undefined };
  const storage = openStorage(url, { endpoint: ctx.settings.s3Endpoint, ...(ctx.opts.verbose ? { log: ctx.log } : {}) });
  try {
    const cold = await openColdTier(hot, storage, credentialsFrom(ctx.settings, ctx.env), write);
    return {
      tiers: { hot, cold },
      url,
      close: async () => {
        await cold?.close();
        await storage.close();
      },
    };
  } catch (e) {
    await storage.close().catch(() => undefined);
    throw e;
  }
}

/** Shared locks on the repository and, when open, its cold tier, for the span of `fn`. */
function withTierLocks<T>(tiers: Tiers, purpose: string, fn: () => Promise<T>): Promise<T> {
  return withLock(tiers.hot, purpose, false, () => (tiers.cold ? withLock(tiers.cold, purpose, false, fn) : fn()));
}

function exportRow(e: ExportRef) {
  return {
    id: e.id,
    time: e.meta.time,
    database: e.meta.database,
    size: e.meta.size,
    storedBytes: e.manifest.stats.storedBytes,
    tier: e.tier,
    labels: e.manifest.labels,
    serverVersion: e.meta.serverVersion,
    pgDumpVersion: e.meta.pgDumpVersion,
    sha256: e.meta.sha256,
    ...(e.meta.movedAt ? { movedAt: e.meta.movedAt } : {}),
  };
}

function short(t: string): string {
  return t.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

const exportCmd: Command = {
  name: 'pg export',
  summary: 'take a compliance export: pg_dump -Fc into the repository, chunked so weekly exports dedup',
  usage: '[--database D] [--label L]... [--json]',
  description:
    'Runs pg_dump -Fc -Z0 (libpq environment: PGHOST, PGPORT, PGUSER, PGDATABASE; --database overrides PGDATABASE)\n' +
    'and streams its output through content-defined chunks into the repository, compressed (zstd) and encrypted.\n' +
    'Unchanged table data is stored once across exports. Fails, writing nothing, when pg_dump fails.',
  options: { database: { type: 'string' }, label: { type: 'string', multiple: true }, 'lock-wait': { type: 'string' } },
  async run(ctx, { values }) {
    const database = str(values.database);
    if (database === '') throw new UsageError('--database needs a database name');
    const lockWait = seconds(str(values['lock-wait']), 600, '--lock-wait');
    const repo = await hotRepo(ctx);
    const r = await recordedRun(
      repo,
      { job: 'pg export', asset: database ?? ctx.env.PGDATABASE },
      () =>
        withLock(
          repo,
          'pg export',
          false,
          () =>
            takeExport(repo, {
              database,
              labels: strs(values.label),
              env: ctx.env,
              onProgress: (read, stored) => ctx.progress.update(`dumped ${bytes(read)}  stored ${bytes(stored)}`),
            }),
          lockWait,
        ),
      (x) => ({ bytes: x.manifest.stats.storedBytes, snapshot: x.id, details: { database: x.meta.database, size: x.meta.size } }),
    );
    ctx.progress.done();
    const s = r.manifest.stats;
    ctx.out({ id: r.id, ...r.meta, storedBytes: s.storedBytes, newBytes: s.newBytes, labels: r.manifest.labels, durationMs: s.durationMs }, () =>
      [
        `export ${r.id.slice(0, 12)} of database "${r.meta.database}" saved (PostgreSQL ${r.meta.serverVersion}, pg_dump ${r.meta.pgDumpVersion})`,
        `  dump ${bytes(r.meta.size)}: ${bytes(s.newBytes)} new, ${bytes(s.storedBytes)} stored, in ${duration(s.durationMs)}`,
      ].join('\n'),
    );
  },
};

const exportsCmd: Command = {
  name: 'pg exports',
  summary: 'list compliance exports (both tiers when a cold tier is configured)',
  usage: '[--cold URL] [--json]',
  options: COLD_OPTION,
  async run(ctx, { values }) {
    const t = await openTiers(ctx, values, false);
    try {
      const rows = (await listExports(t.tiers)).map(exportRow);
      ctx.out(rows, () =>
        rows.length === 0
          ? 'no exports'
          : table(
              ['ID', 'TIME', 'DATABASE', 'SIZE', 'STORED', 'TIER', 'LABELS'],
              rows.map((r) => [r.id.slice(0, 12), short(r.time), r.database, bytes(r.size), bytes(r.storedBytes), r.tier, r.labels.join(',')]),
            ),
      );
    } finally {
      await t.close();
    }
  },
};

const getCmd: Command = {
  name: 'pg export get',
  summary: 'write an export to a file pg_restore reads (byte for byte what pg_dump wrote)',
  usage: 'ID|latest --out FILE [--force] [--cold URL] [--json]',
  description: 'Reads from the cold tier when the export has moved there. Refuses to overwrite an existing file unless --force.',
  args: [1, 1],
  options: { out: { type: 'string' }, force: { type: 'boolean' }, ...COLD_OPTION },
  async run(ctx, { values, positionals }) {
    const out = str(values.out);
    if (!out) throw new UsageError('pg export get needs --out FILE', { hint: 'the file must not exist (or pass --force)' });
    const t = await openTiers(ctx, values, false);
    try {
      const ref = await resolveExport(t.tiers, positionals[0]);
      const r = await withLock(ref.repo, 'pg export get', false, () => writeExportFile(ref, out, !!values.force));
      ctx.out({ id: ref.id, tier: ref.tier, out, size: r.size, sha256: r.sha256 }, () => `wrote export ${ref.id.slice(0, 12)} (${ref.tier} tier) of database "${ref.meta.database}" to ${out}: ${bytes(r.size)}, SHA-256 ${r.sha256}`);
    } finally {
      await t.close();
    }
  },
};

const restoreCmd: Command = {
  name: 'pg export restore',
  summary: 'load an export into an empty database (pg_restore, one transaction)',
  usage: 'ID|latest --into CONNINFO [--force] [--cold URL] [--json]',
  description:
    'CONNINFO is a database name, a postgresql:// URL or "host=… dbname=…"; what it leaves out comes from the\n' +
    'PG* environment. Runs pg_restore --no-owner --exit-on-error --single-transaction. Refuses a database that\n' +
    'holds user tables unless --force (then objects in the export are dropped and recreated).',
  args: [1, 1],
  options: { into: { type: 'string' }, force: { type: 'boolean' }, ...COLD_OPTION },
  async run(ctx, { values, positionals }) {
    const into = str(values.into);
    if (!into) throw new UsageError('pg export restore needs --into CONNINFO', { hint: 'create an empty database first, e.g. createdb restored, then --into restored' });
    const t = await openTiers(ctx, values, false);
    try {
      const ref = await resolveExport(t.tiers, positionals[0]);
      const started = Date.now();
      const r = await withLock(ref.repo, 'pg export restore', false, () => restoreExport(ref, into, { force: !!values.force, env: ctx.env }));
      ctx.out({ ...r, tier: ref.tier, durationMs: Date.now() - started }, () => `loaded export ${ref.id.slice(0, 12)} (${ref.tier} tier, ${bytes(r.bytes)}) into database "${r.database}" in ${duration(Date.now() - started)}`);
    } finally {
      await t.close();
    }
  },
};

function days(v: string | undefined, dflt: number, flag: string): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} takes a whole number of days, got "${v}"`);
  return Number(v);
}

function humanLifecycle(now: number, rules: LifecycleRules, decisions: LifecycleDecision[], url: string | undefined, refs: Map<string, ExportRef>): string {
  const lines = [`export lifecycle at ${new Date(now).toISOString()}: cold after ${rules.coldAfterDays} days, deleted after ${rules.deleteAfterDays} days; cold tier ${url ?? '(none configured)'}`];
  if (decisions.length === 0) return [...lines, 'no exports'].join('\n');
  lines.push(
    table(
      ['ID', 'TIME', 'DATABASE', 'AGE', 'TIER', 'ACTION', 'WHY'],
      decisions.map((d) => [d.id.slice(0, 12), short(d.time), refs.get(d.id)?.meta.database ?? '', `${d.ageDays}d`, d.tier, d.action === 'move' ? 'to cold' : d.action, d.reason]),
    )
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  );
  return lines.join('\n');
}

const lifecycleCmd: Command = {
  name: 'pg export lifecycle',
  summary: 'move old exports to the cold tier and delete expired ones (shows the plan; acts only with --yes)',
  usage: '[--cold-after-days 90] [--delete-after-days 730] [--cold URL] [--dry-run | --yes] [--prune] [--json]',
  description:
    'The runbook: exports go to the cold tier after 90 days and are deleted after 730. The cold tier is a second\n' +
    'location (--cold URL, FERRY_COLD_REPO, or repository.cold_url in ferry.yaml), created on first use as a\n' +
    'repository with the same key. A move copies the blobs the export needs that the cold tier lacks, verifies\n' +
    'the copy, then removes the hot manifest; data younger exports share stays. --prune then frees unused data\n' +
    'in both tiers (like `ferry prune`). With no terminal and no --yes it refuses rather than assume yes.',
  options: {
    'cold-after-days': { type: 'string' },
    'delete-after-days': { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean' },
    prune: { type: 'boolean' },
    ...COLD_OPTION,
  },
  async run(ctx, { values }) {
    const rules: LifecycleRules = {
      coldAfterDays: days(str(values['cold-after-days']), RUNBOOK_LIFECYCLE.coldAfterDays, '--cold-after-days'),
      deleteAfterDays: days(str(values['delete-after-days']), RUNBOOK_LIFECYCLE.deleteAfterDays, '--delete-after-days'),
    };
    if (rules.deleteAfterDays < rules.coldAfterDays) throw new UsageError(`--delete-after-days (${rules.deleteAfterDays}) is shorter than --cold-after-days (${rules.coldAfterDays})`);
    const dry = !!values['dry-run'];
    const yes = !!values.yes;
    if (dry && yes) throw new UsageError('ferry pg export lifecycle takes --dry-run or --yes, not both');
    const now = commandClock(ctx).now();
    const url = coldUrl(ctx, values);
    // The cold tier is created only when something moves there (not on a dry run).
    const t = await openTiers(ctx, values, false);
    try {
      const plan = async (tiers: Tiers) => {
        const refs = await listExports(tiers);
        return { refs: new Map(refs.map((r) => [r.id, r])), decisions: planLifecycle(refs.map((r) => ({ id: r.id, time: r.meta.time, tier: r.tier })), now, rules) };
      };
      const first = await withTierLocks(t.tiers, 'pg export lifecycle (plan)', () => plan(t.tiers));
      const acting = first.decisions.filter((d) => d.action !== 'keep');
      const moves = acting.filter((d) => d.action === 'move').length;
      const deletes = acting.length - moves;
      const planJson = { now: new Date(now).toISOString(), rules, cold: url ?? null, decisions: first.decisions.map((d) => ({ ...d, database: first.refs.get(d.id)?.meta.database })) };
      const shown = humanLifecycle(now, rules, first.decisions, url, first.refs);
      const what = `move ${moves} export(s) to the cold tier and delete ${deletes}`;
      if (acting.length === 0 && (dry || !values.prune)) {
        ctx.out({ ...planJson, dryRun: dry, done: true, moved: [], deleted: [] }, () => `${shown}\nnothing to do`);
        return;
      }
      if (acting.length === 0) {
        const pruned = { hot: await prune(t.tiers.hot), ...(t.tiers.cold ? { cold: await prune(t.tiers.cold) } : {}) };
        ctx.out({ ...planJson, dryRun: false, done: true, moved: [], deleted: [], prune: pruned }, () =>
          `${shown}\nnothing to move or delete; pruned: freed ${bytes(pruned.hot.bytesFreed)} in the repository${pruned.cold ? `, ${bytes(pruned.cold.bytesFreed)} in the cold tier` : ''}`,
        );
        return;
      }
      if (moves > 0 && !url) {
        if (dry) ctx.warn('no cold tier is configured: the moves shown cannot be done');
        else {
          ctx.out({ ...planJson, dryRun: false, done: false }, () => shown);
          throw new ConfigError(`${moves} export(s) are due for the cold tier but no cold tier is configured`, { hint: 'pass --cold URL, set FERRY_COLD_REPO, or set repository.cold_url in ferry.yaml' });
        }
      }
      if (dry) {
        ctx.out({ ...planJson, dryRun: true, done: false }, () => `${shown}\ndry run: would ${what}; nothing changed`);
        return;
      }
      if (!yes) {
        const terminal = !!process.stdin.isTTY && !!process.stderr.isTTY;
        if (!terminal) {
          ctx.out({ ...planJson, dryRun: false, done: false }, () => shown);
          throw new UsageError(`ferry pg export lifecycle would ${what} but was not told to: it acts only with --yes when there is no terminal`, { hint: 'pass --yes to go ahead, or --dry-run to only show the plan' });
        }
        if (!ctx.json) process.stdout.write(shown + '\n');
        if (!(await confirmOnTerminal(`${what[0].toUpperCase()}${what.slice(1)}?`))) {
          ctx.say('nothing changed');
          return 1;
        }
      }
      let tiers = t.tiers;
      let extra: OpenTiers | undefined;
      if (moves > 0) {
        // Opened again to write: created when missing, and checked to be another place than the repository.
        extra = await openTiers(ctx, values, true);
        tiers = extra.tiers;
      }
      try {
        const shownAction = new Map(acting.map((d) => [d.id, d.action]));
        const done = await recordedRun(
          tiers.hot,
          { job: 'pg export lifecycle' },
          () =>
            withTierLocks(tiers, 'pg export lifecycle', async () => {
              // Again under the locks: act only on what was shown and is still due.
              const fresh = await plan(tiers);
              const moved: MoveReport[] = [];
              const deleted: string[] = [];
              for (const d of fresh.decisions) {
                if (d.action === 'keep' || shownAction.get(d.id) !== d.action) continue;
                const ref = fresh.refs.get(d.id)!;
                if (d.action === 'move') {
                  ctx.progress.update(`moving export ${d.id.slice(0, 12)} to the cold tier`);
                  moved.push(await moveToCold(tiers.hot, tiers.cold!, ref));
                } else {
                  await deleteExport(ref);
                  deleted.push(d.id);
                }
              }
              ctx.progress.done();
              return { moved, deleted };
            }),
          (x) => ({ details: { moved: x.moved.map((m) => m.id), deleted: x.deleted } }),
        );
        const pruned = values.prune
          ? { hot: await prune(tiers.hot), ...(tiers.cold ? { cold: await prune(tiers.cold) } : {}) }
          : undefined;
        ctx.out({ ...planJson, dryRun: false, done: true, ...done, ...(pruned ? { prune: pruned } : {}) }, () =>
          [
            ...(yes ? [shown] : []),
            `moved ${done.moved.length} export(s) to the cold tier (${done.moved.reduce((a, m) => a + m.blobsCopied, 0)} blobs copied, ${bytes(done.moved.reduce((a, m) => a + m.storedBytes, 0))}; ${done.moved.reduce((a, m) => a + m.blobsShared, 0)} already there), deleted ${done.deleted.length}`,
            pruned
              ? `pruned: freed ${bytes(pruned.hot.bytesFreed)} in the repository${pruned.cold ? `, ${bytes(pruned.cold.bytesFreed)} in the cold tier` : ''}`
              : '`ferry prune` (and `ferry prune --repo COLD_URL`) frees data nothing uses any more',
          ].join('\n'),
        );
      } finally {
        await extra?.close();
      }
    } finally {
      await t.close();
    }
  },
};

export const exportCommands: Command[] = [exportCmd, exportsCmd, getCmd, restoreCmd, lifecycleCmd];
