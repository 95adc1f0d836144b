/**
 * `ferry expire`: applies the retention policy. Shows what it would remove, and
 * removes only with --yes (or a "yes" typed on a terminal); with no terminal and no
 * --yes it refuses (exit 2) rather than assume yes.
 *
 * Order, so an interrupted expire leaves only usable backups: forget the removed
 * snapshots (manifests first), then delete WAL objects (oldest first), then, with
 * --prune, remove the data no snapshot uses (prune takes the exclusive lock).
 * The plan is computed again under the lock before anything is deleted, and only
 * what was shown (and is still removable) goes.
 *
 * The policy comes from flags, else from ferry.yaml:
 *
 *   policy:
 *     retention:
 *       keep_within: 30d          # keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly
 *       keep_labels: [before-migration]
 *       wal_keep_within: 7d       # PITR window for WAL
 *       kinds:                    # per-kind overrides
 *         secrets: { keep_within: 90d }
 *
 * A flag sets its rule for every kind (overriding the file's kinds too).
 */
import { hostname } from 'node:os';
import { withLock } from '../repo/lock.ts';
import { listSnapshots, type SnapshotRef } from '../repo/manifest.ts';
import { forget, prune, type PrunePlan } from '../repo/prune.ts';
import { applyPolicy, describeRules, formatDuration, hasKeepRule, parseCount, parseDuration, parseRetentionDoc, type RetentionPolicy, type RetentionResult, type RetentionRules } from '../repo/retention.ts';
import type { Repository } from '../repo/repository.ts';
import { recordRun } from '../repo/runs.ts';
import { loadWalArchive } from '../postgres/verify.ts';
import { planWalExpiry, summariseWal, type ArchivedWal, type WalExpiryPlan, type WalRangeSummary } from '../postgres/walretention.ts';
import type { Clock } from '../util/clock.ts';
import { ConfigError, UsageError, errorMessage } from '../util/errors.ts';
import { bytes, table } from '../util/format.ts';
import { confirmOnTerminal, str, strs, type Command, type ParsedArgs } from './command.ts';
import type { Context } from './context.ts';

/**
 * The clock commands use for "now". FERRY_NOW (an ISO time, undocumented) moves it
 * for tests that run bin/ferry as a child; everything else reads ctx.clock.
 */
export function commandClock(ctx: Context): Clock {
  const at = ctx.env.FERRY_NOW;
  if (!at) return ctx.clock;
  const t = Date.parse(at);
  if (Number.isNaN(t)) throw new UsageError(`FERRY_NOW="${at}" is not an ISO 8601 time`);
  return { now: () => t, random: (n) => ctx.clock.random(n) };
}

export interface RetentionSettings {
  policy: RetentionPolicy;
  /** The WAL PITR window (ms), when set. */
  walKeepWithin?: number;
}

const COUNT_FLAGS = {
  'keep-last': 'keepLast',
  'keep-hourly': 'keepHourly',
  'keep-daily': 'keepDaily',
  'keep-weekly': 'keepWeekly',
  'keep-monthly': 'keepMonthly',
  'keep-yearly': 'keepYearly',
} as const;

/** Retention from ferry.yaml `policy.retention`, overridden by flags (a flag applies to every kind). */
export function retentionSettings(ctx: Context, values: ParsedArgs['values']): RetentionSettings {
  const where = `${ctx.settings.configPath ?? 'ferry.yaml'}: policy.retention`;
  const doc = ctx.settings.file.policy?.retention;
  let policy: RetentionPolicy = {};
  let walKeepWithin: number | undefined;
  if (doc !== undefined && doc !== null) {
    policy = parseRetentionDoc(doc, where, ['wal_keep_within']);
    const w = (doc as Record<string, unknown>).wal_keep_within;
    if (w !== undefined && w !== null) walKeepWithin = parseDuration(String(w), `${where}.wal_keep_within`);
  }
  const set = <K extends keyof RetentionRules>(field: K, v: RetentionRules[K]) => {
    policy[field] = v;
    for (const k of Object.values(policy.kinds ?? {})) delete k[field];
  };
  const within = str(values['keep-within']);
  if (within !== undefined) set('keepWithin', flagValue(() => parseDuration(within, '--keep-within')));
  for (const [flag, field] of Object.entries(COUNT_FLAGS)) {
    const v = str(values[flag]);
    if (v !== undefined) set(field, flagValue(() => parseCount(v, `--${flag}`)));
  }
  const labels = strs(values['keep-label']);
  if (labels.length) set('keepLabels', labels);
  const wal = str(values['wal-keep-within']);
  if (wal !== undefined) walKeepWithin = flagValue(() => parseDuration(wal, '--wal-keep-within'));
  return { policy, ...(walKeepWithin !== undefined ? { walKeepWithin } : {}) };
}

/** A bad flag value is a usage error (the same text as in ferry.yaml, exit 2). */
function flagValue<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message, { hint: e.hint });
    throw e;
  }
}

function describePolicy(p: RetentionPolicy): string {
  const { kinds, ...base } = p;
  const parts = [describeRules(base)];
  for (const [k, r] of Object.entries(kinds ?? {})) parts.push(`${k}: ${describeRules({ ...base, ...r })}`);
  return parts.join('; ');
}

// ---- the plan -----------------------------------------------------------------------------

export interface ExpirePlan {
  now: number;
  snapshots: RetentionResult;
  wal?: WalExpiryPlan;
}

/** Kinds `expire` leaves alone unless named with --kind. */
const OWN_SCHEDULE = new Set(['export', 'secrets', 'git']);

async function makePlan(repo: Repository, s: RetentionSettings, now: number, filter: { kind?: string; asset?: string }): Promise<ExpirePlan> {
  const all = await listSnapshots(repo);
  // Some kinds keep their own schedule, so a 30-day snapshot rule never deletes them; `--kind K`
  // opts one in: exports (`pg export lifecycle`: cold after 90 days, gone after 730), secrets
  // versions (`secrets expire`: the asset's keep_days, 90 by default) and git bundles (kept).
  const selected = all.filter((r) => (filter.kind ? r.manifest.kind === filter.kind : !OWN_SCHEDULE.has(r.manifest.kind)) && (!filter.asset || r.manifest.asset === filter.asset));
  const snapshots = applyPolicy(
    selected.map((r) => ({ id: r.id, kind: r.manifest.kind, asset: r.manifest.asset, time: r.manifest.endTime, labels: r.manifest.labels })),
    s.policy,
    now,
  );
  if (s.walKeepWithin === undefined) return { now, snapshots };
  const removed = new Set(snapshots.remove.map((r) => r.id));
  const pg: SnapshotRef[] = all.filter((r) => r.manifest.kind === 'postgres');
  const archive = await loadWalArchive(repo, { refs: pg, kept: (id) => !removed.has(id) });
  const wal = planWalExpiry({ ...archive, now, keepWithin: s.walKeepWithin });
  // The window's base snapshots stay even when the snapshot policy would drop them.
  for (const p of wal.protect) {
    const i = snapshots.remove.findIndex((r) => r.id === p.id);
    if (i < 0) continue;
    const [r] = snapshots.remove.splice(i, 1);
    snapshots.keep.push({ id: r.id, kind: r.kind, asset: r.asset, time: r.time, reasons: [p.reason] });
  }
  return { now, snapshots, wal };
}

interface WalSummaryJson {
  keepWithin: string;
  windowStart: string;
  remove: { count: number; bytes: number; timelines: WalRangeSummary[] };
  keep: { count: number; bytes: number };
  anchors: { timeline: number; snapshot: string }[];
  protect: { id: string; reason: string }[];
  blocked?: string;
  notes: string[];
}

function walJson(w: WalExpiryPlan, keepWithin: number): WalSummaryJson {
  return {
    keepWithin: formatDuration(keepWithin),
    windowStart: new Date(w.windowStart).toISOString(),
    remove: { count: w.remove.length, bytes: sum(w.remove), timelines: summariseWal(w.remove) },
    keep: w.keep,
    anchors: w.anchors,
    protect: w.protect,
    ...(w.blocked ? { blocked: w.blocked } : {}),
    notes: w.notes,
  };
}

function sum(list: readonly ArchivedWal[]): number {
  return list.reduce((n, o) => n + o.size, 0);
}

function short(t: string): string {
  return t.replace(/\.\d+Z$/, 'Z');
}

function humanPlan(plan: ExpirePlan, s: RetentionSettings): string {
  const lines: string[] = [];
  const sn = plan.snapshots;
  lines.push(`expire at ${new Date(plan.now).toISOString()}: snapshots ${describePolicy(s.policy)}; WAL ${s.walKeepWithin !== undefined ? `keep-within ${formatDuration(s.walKeepWithin)}` : 'not expired (no WAL retention set)'}`);
  const rows = [
    ...sn.keep.map((k) => ({ id: k.id, time: k.time, kind: k.kind, asset: k.asset, action: 'keep', why: k.reasons.join(', ') })),
    ...sn.remove.map((r) => ({ id: r.id, time: r.time, kind: r.kind, asset: r.asset, action: 'remove', why: r.reason })),
  ].sort((a, b) => a.kind.localeCompare(b.kind) || a.asset.localeCompare(b.asset) || b.time.localeCompare(a.time));
  lines.push(`snapshots: ${sn.keep.length} kept, ${sn.remove.length} to remove`);
  if (rows.length) lines.push(indent(table(['ID', 'TIME', 'KIND', 'ASSET', 'ACTION', 'WHY'], rows.map((r) => [r.id.slice(0, 12), short(r.time), r.kind, r.asset, r.action, r.why]))));
  const w = plan.wal;
  if (w) {
    if (w.blocked) lines.push(`WAL: nothing removed: ${w.blocked}`);
    else {
      lines.push(`WAL: ${w.remove.length} file(s) (${bytes(sum(w.remove))}) to remove, ${w.keep.count} kept (${bytes(w.keep.bytes)}); PITR window from ${short(new Date(w.windowStart).toISOString())}`);
      for (const r of summariseWal(w.remove)) lines.push(`  timeline ${r.timeline}: ${r.first === r.last ? r.first : `${r.first}..${r.last}`}  ${r.count} file(s)  ${bytes(r.bytes)}`);
      for (const a of w.anchors) lines.push(`  timeline ${a.timeline}: all WAL from snapshot ${a.snapshot.slice(0, 12)} onwards is kept (the window's base)`);
    }
    for (const p of w.protect) lines.push(`  snapshot ${p.id.slice(0, 12)} kept: ${p.reason}`);
    for (const n of w.notes) lines.push(`  note: ${n}`);
  }
  return lines.join('\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

// ---- the command -------------------------------------------------------------------------------

export const expireCommand: Command = {
  name: 'expire',
  summary: 'remove snapshots and WAL the retention policy no longer keeps (shows the plan; acts only with --yes)',
  usage:
    '[--keep-within DUR] [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N]\n' +
    '       [--keep-label L]... [--wal-keep-within DUR] [--kind K] [--asset A] [--dry-run | --yes] [--prune] [--json]',
  description: [
    'Rules (restic-like, per kind and asset, calendar buckets in UTC): --keep-within keeps snapshots taken in the',
    'last DUR (30d, 12h, 2w, 1y; units y mo w d h min s); --keep-last N the N newest; --keep-daily N the newest of',
    'each of the N newest days with snapshots (likewise hourly, weekly, monthly, yearly; N may be "all");',
    '--keep-label L keeps snapshots labelled L. The newest snapshot of each kind and asset is always kept.',
    '--wal-keep-within DUR keeps every point of the last DUR recoverable: all WAL from the newest PostgreSQL',
    'snapshot at or before the window start (kept too) onwards, and each kept snapshot\'s own WAL.',
    'Without flags the policy comes from ferry.yaml (policy.retention: keep_within, keep_daily, ..., keep_labels,',
    'wal_keep_within, kinds: {KIND: {...}}); flags override it for every kind.',
    'Removes only with --yes, or after typing "yes" on a terminal; --dry-run only shows the plan.',
    '--prune then removes the data no snapshot uses (like `ferry prune`).',
    'Compliance exports (`ferry pg export lifecycle`), secrets versions (`ferry secrets expire`) and git bundles keep',
    'their own schedules and are left alone unless named with --kind.',
  ].join('\n'),
  options: {
    'keep-within': { type: 'string' },
    'keep-last': { type: 'string' },
    'keep-hourly': { type: 'string' },
    'keep-daily': { type: 'string' },
    'keep-weekly': { type: 'string' },
    'keep-monthly': { type: 'string' },
    'keep-yearly': { type: 'string' },
    'keep-label': { type: 'string', multiple: true },
    'wal-keep-within': { type: 'string' },
    kind: { type: 'string' },
    asset: { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean' },
    prune: { type: 'boolean' },
  },
  async run(ctx, { values }) {
    const settings = retentionSettings(ctx, values);
    const dry = !!values['dry-run'];
    const yes = !!values.yes;
    if (dry && yes) throw new UsageError('ferry expire takes --dry-run or --yes, not both');
    const anyRule = hasKeepRule(settings.policy) || Object.values(settings.policy.kinds ?? {}).some(hasKeepRule);
    if (!anyRule && settings.walKeepWithin === undefined) {
      throw new UsageError('ferry expire has no retention policy to apply', {
        hint: 'pass rules such as --keep-within 30d --wal-keep-within 7d, or set policy.retention in ferry.yaml',
      });
    }
    const filter = { kind: str(values.kind), asset: str(values.asset) };
    const now = commandClock(ctx).now();
    const repo = await ctx.repo();
    const plan = await withLock(repo, 'expire (plan)', false, () => makePlan(repo, settings, now, filter));
    const snapIds = new Set(plan.snapshots.remove.map((r) => r.id));
    const walKeys = new Set((plan.wal?.remove ?? []).map((o) => o.key));
    const planJson = {
      now: new Date(now).toISOString(),
      policy: describePolicy(settings.policy),
      snapshots: plan.snapshots,
      wal: plan.wal && settings.walKeepWithin !== undefined ? walJson(plan.wal, settings.walKeepWithin) : null,
    };
    const what = `${snapIds.size} snapshot(s) and ${walKeys.size} WAL file(s) (${bytes(sum(plan.wal?.remove ?? []))})`;

    if (snapIds.size === 0 && walKeys.size === 0) {
      if (values.prune && !dry) return runPrune(ctx, repo, planJson, { forgotten: [], walDeleted: 0, walBytes: 0 }, humanPlan(plan, settings));
      ctx.out({ ...planJson, dryRun: dry, done: true, forgotten: [], walDeleted: 0 }, () => `${humanPlan(plan, settings)}\nnothing to remove`);
      return;
    }
    if (dry) {
      ctx.out({ ...planJson, dryRun: true, done: false }, () => `${humanPlan(plan, settings)}\ndry run: would remove ${what}${values.prune ? ', then prune unused data' : ''}; nothing removed`);
      return;
    }
    if (!yes) {
      const terminal = !!process.stdin.isTTY && !!process.stderr.isTTY;
      if (!terminal) {
        ctx.out({ ...planJson, dryRun: false, done: false }, () => humanPlan(plan, settings));
        throw new UsageError(`ferry expire would remove ${what} but was not told to: it removes only with --yes when there is no terminal`, {
          hint: 'pass --yes to remove them, or --dry-run to only list them',
        });
      }
      if (!ctx.json) process.stdout.write(humanPlan(plan, settings) + '\n');
      if (!(await confirmOnTerminal(`Remove ${what}?`))) {
        ctx.say('nothing removed');
        return 1;
      }
    }

    const started = ctx.clock.now();
    try {
      const done = await withLock(repo, 'expire', false, async () => {
        // Again under the lock: delete only what was shown and is still removable.
        const fresh = await makePlan(repo, settings, now, filter);
        const forgotten = fresh.snapshots.remove.filter((r) => snapIds.has(r.id)).map((r) => r.id);
        await forget(repo, forgotten);
        const wal = fresh.wal && !fresh.wal.blocked ? fresh.wal.remove.filter((o) => walKeys.has(o.key)) : [];
        // Oldest first, a few at a time: an interrupted run leaves the archive without holes.
        for (let i = 0; i < wal.length; i += 8) await Promise.all(wal.slice(i, i + 8).map((o) => repo.storage.delete(o.key)));
        return { forgotten, walDeleted: wal.length, walBytes: sum(wal) };
      });
      await recordRun(repo, {
        job: 'expire',
        host: hostname(),
        startTime: new Date(started).toISOString(),
        endTime: new Date(ctx.clock.now()).toISOString(),
        durationMs: ctx.clock.now() - started,
        result: 'ok',
        details: { forgotten: done.forgotten, walDeleted: done.walDeleted, walBytes: done.walBytes },
      });
      // On a terminal the plan was shown before the question.
      const shown = yes ? humanPlan(plan, settings) : undefined;
      if (values.prune) return runPrune(ctx, repo, planJson, done, shown);
      ctx.out({ ...planJson, dryRun: false, done: true, ...done }, () =>
        [...(shown ? [shown] : []), `removed ${done.forgotten.length} snapshot(s) and ${done.walDeleted} WAL file(s) (${bytes(done.walBytes)}); \`ferry prune\` frees the snapshots' data`].join('\n'),
      );
    } catch (e) {
      await recordRun(repo, { job: 'expire', host: hostname(), startTime: new Date(started).toISOString(), endTime: new Date(ctx.clock.now()).toISOString(), durationMs: ctx.clock.now() - started, result: 'failed', error: errorMessage(e) }).catch(() => undefined);
      throw e;
    }
  },
};

async function runPrune(
  ctx: Context,
  repo: Repository,
  planJson: Record<string, unknown>,
  done: { forgotten: string[]; walDeleted: number; walBytes: number },
  shownPlan?: string,
): Promise<void> {
  const p: PrunePlan = await prune(repo, {});
  ctx.out({ ...planJson, dryRun: false, done: true, ...done, prune: p }, () =>
    [
      ...(shownPlan ? [shownPlan] : []),
      `removed ${done.forgotten.length} snapshot(s) and ${done.walDeleted} WAL file(s) (${bytes(done.walBytes)})`,
      `pruned: deleted ${p.packsDelete.length + p.packsUnindexed.length} pack(s), repacked ${p.packsRepack.length}; freed ${bytes(p.bytesFreed)}`,
    ].join('\n'),
  );
}
