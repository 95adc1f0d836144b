/**
 * `ferry pg verify`: checks the WAL archive against the PostgreSQL snapshots and
 * shows each timeline's recoverable windows (logic in postgres/verify.ts).
 * Exit 1 with one line per problem when WAL is missing.
 *
 * Also exports the commands this pair registers (expire and pg verify), so the
 * command list gains them in one line.
 */
import { withLock } from '../repo/lock.ts';
import { formatDuration } from '../repo/retention.ts';
import { loadWalArchive, verifyArchive, type VerifyReport } from '../postgres/verify.ts';
import { IntegrityError } from '../util/errors.ts';
import { bytes, table } from '../util/format.ts';
import type { Command } from './command.ts';
import { commandClock, expireCommand, retentionSettings } from './expire.ts';

function short(t: string | undefined): string {
  return t ? t.replace(/\.\d+Z$/, 'Z') : '?';
}

function humanReport(r: VerifyReport, keepWithin: number | undefined): string {
  const lines: string[] = [];
  const consistent = r.snapshots.filter((s) => s.consistent).length;
  lines.push(
    `${r.snapshots.length} PostgreSQL snapshot(s), ${consistent} with their WAL complete; ` +
      (keepWithin !== undefined ? `continuity required from the PITR window's base snapshot (window ${formatDuration(keepWithin)}, from ${short(r.windowStart)})` : 'continuity required from the oldest snapshot'),
  );
  if (r.timelines.length) {
    lines.push(
      table(
        ['TIMELINE', 'FROM', 'SWITCH LSN', 'HISTORY', 'SEGMENTS', 'SIZE', 'FIRST', 'LAST'],
        r.timelines.map((t) => [String(t.timeline), t.parent !== undefined ? String(t.parent) : '-', t.switchLsn ?? '-', t.history, String(t.segments), bytes(t.bytes), t.first ?? '-', t.last ?? '-']),
      ),
    );
  }
  for (const t of r.timelines) {
    if (!t.windows.length) continue;
    // The newest windows matter most; older snapshots whose later WAL expired are restore points only.
    for (const w of t.windows.slice(-3)) {
      lines.push(
        `timeline ${t.timeline}: recoverable from ${short(w.from.time)} (LSN ${w.from.lsn}, snapshot ${w.from.snapshot.slice(0, 12)}${w.from.timeline !== t.timeline ? ` on timeline ${w.from.timeline}` : ''})` +
          ` to the end of ${w.to.segment} (LSN ${w.to.lsn}${w.to.time ? `, archived ${short(w.to.time)}` : ''})`,
      );
    }
    if (t.windows.length > 3) lines.push(`timeline ${t.timeline}: ${t.windows.length - 3} earlier window(s) (see --json)`);
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  for (const p of r.problems) lines.push(`problem: ${p.message}`);
  lines.push(r.ok ? 'WAL archive complete: no problems found' : `${r.problems.length} problem(s) found`);
  return lines.join('\n');
}

export const pgVerifyCommand: Command = {
  name: 'pg verify',
  summary: 'check that archived WAL makes every PostgreSQL snapshot consistent and has no gaps; show the recoverable windows',
  usage: '[--wal-keep-within DUR] [--json]',
  description: [
    'Checks each snapshot\'s own WAL (start through stop segment), and that every timeline\'s path (timeline',
    'switches followed through history files) has no missing segment from the oldest snapshot to the newest',
    'archived segment. With a WAL retention (--wal-keep-within, or policy.retention.wal_keep_within in',
    'ferry.yaml), continuity is required from the snapshot the PITR window starts from, as `ferry expire` keeps it.',
    'Exits 1 when anything is missing, with one line per problem.',
  ].join('\n'),
  options: { 'wal-keep-within': { type: 'string' } },
  async run(ctx, { values }) {
    const { walKeepWithin } = retentionSettings(ctx, { 'wal-keep-within': values['wal-keep-within'] });
    const now = commandClock(ctx).now();
    const repo = await ctx.repo();
    const archive = await withLock(repo, 'pg verify', false, () => loadWalArchive(repo));
    const report = verifyArchive({ ...archive, ...(walKeepWithin !== undefined ? { windowStart: now - walKeepWithin } : {}) });
    ctx.out(report, () => humanReport(report, walKeepWithin));
    if (!report.ok) {
      if (ctx.json) return 1;
      const expiredOnPurpose = walKeepWithin === undefined && report.problems.some((p) => p.kind === 'gap');
      throw new IntegrityError(`the WAL archive in ${repo.location} has ${report.problems.length} problem(s); the first: ${report.problems[0].message}`, {
        hint: expiredOnPurpose
          ? 'if `ferry expire --wal-keep-within` removed that WAL, pass the same --wal-keep-within here (or set policy.retention.wal_keep_within); otherwise take a new snapshot (`ferry pg snapshot`) and check archive_command'
          : 'a missing segment cannot be recreated from the repository: take a new snapshot (`ferry pg snapshot`) so recovery no longer needs it, and check archive_command',
      });
    }
  },
};

/** The commands of this pair, for the command list. */
export const retentionCommands: Command[] = [expireCommand, pgVerifyCommand];
