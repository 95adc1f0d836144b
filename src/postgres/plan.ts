/**
 * Which snapshot serves a recovery target: a pure decision, tested with tables.
 *
 * A snapshot can serve a target only if its consistent point (stop LSN / stop
 * time) is at or before the target; among those, the newest serves (least WAL to
 * replay). Targets that cannot be reached are refused before anything is written.
 */
import { ConfigError } from '../util/errors.ts';
import type { PgSnapshotMeta } from './meta.ts';
import { parseLsn } from './walname.ts';

export type RecoveryTarget =
  | { kind: 'latest' }
  | { kind: 'immediate' }
  | { kind: 'time'; time: number; text: string }
  | { kind: 'lsn'; lsn: string }
  | { kind: 'xid'; xid: string }
  | { kind: 'name'; name: string };

export interface Candidate {
  id: string;
  meta: PgSnapshotMeta;
}

export interface ArchiveState {
  /** When the newest WAL object was stored (ms), if any WAL is archived. */
  lastArchivedAt?: number;
}

function stopMs(c: Candidate): number {
  return Date.parse(c.meta.stopTime);
}

/** Picks the snapshot for `target`, or throws a ConfigError saying why none can serve it. */
export function chooseSnapshot(snapshots: Candidate[], target: RecoveryTarget, now: number, archive: ArchiveState, explicit?: string): Candidate {
  if (snapshots.length === 0) throw new ConfigError('there is no PostgreSQL snapshot to restore from', { hint: 'take one with `ferry pg snapshot`' });
  const sorted = [...snapshots].sort((a, b) => stopMs(a) - stopMs(b));
  const oldest = sorted[0];
  if (target.kind === 'time') {
    if (target.time > now) throw new ConfigError(`recovery target ${target.text} is in the future (now is ${new Date(now).toISOString()})`);
    if (target.time < stopMs(oldest)) {
      throw new ConfigError(`recovery target ${target.text} is before the oldest snapshot's consistent point (${oldest.meta.stopTime}, snapshot ${oldest.id.slice(0, 12)})`, {
        hint: 'choose a later time; `ferry pg snapshots` lists what exists',
      });
    }
    if (archive.lastArchivedAt === undefined || target.time > archive.lastArchivedAt) {
      const last = archive.lastArchivedAt === undefined ? 'none is archived' : `the newest was archived at ${new Date(archive.lastArchivedAt).toISOString()}`;
      throw new ConfigError(`recovery target ${target.text} is past the last archived WAL (${last})`, {
        hint: 'choose an earlier time, or restore to the end of the archive (no target)',
      });
    }
  }
  if (target.kind === 'lsn' && parseLsn(target.lsn) < parseLsn(oldest.meta.stopLsn)) {
    throw new ConfigError(`recovery target LSN ${target.lsn} is before the oldest snapshot's consistent point (${oldest.meta.stopLsn})`);
  }
  const fits = (c: Candidate): boolean => {
    if (target.kind === 'time') return stopMs(c) <= target.time;
    if (target.kind === 'lsn') return parseLsn(c.meta.stopLsn) <= parseLsn(target.lsn);
    return true;
  };
  if (explicit) {
    const c = sorted.find((s) => s.id === explicit);
    if (!c) throw new ConfigError(`snapshot ${explicit.slice(0, 12)} is not a PostgreSQL snapshot of this asset`);
    if (!fits(c)) throw new ConfigError(`snapshot ${c.id.slice(0, 12)} is consistent only at ${c.meta.stopTime} (LSN ${c.meta.stopLsn}), after the recovery target`, { hint: 'choose an older snapshot, or leave --snapshot out' });
    return c;
  }
  const chosen = sorted.filter(fits).at(-1);
  if (!chosen) throw new ConfigError('no snapshot is consistent before the recovery target');
  return chosen;
}

/** Parses a user's time: ISO 8601, or pgBackRest's `YYYY-MM-DD HH:MM:SS[.fff]+00`. */
export function parseTargetTime(text: string): number {
  const t = text.trim();
  const normal = t.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00');
  const ms = Date.parse(normal);
  if (Number.isNaN(ms) || !/\d{4}-\d\d-\d\d/.test(t)) {
    throw new ConfigError(`"${text}" is not a time`, { hint: 'use ISO 8601 with a zone, e.g. 2026-11-24T03:15:00Z or "2026-11-24 03:15:00+00"' });
  }
  if (!/(Z|[+-]\d\d(:?\d\d)?)$/i.test(t)) throw new ConfigError(`time "${text}" has no time zone`, { hint: 'add Z or an offset such as +00, e.g. 2026-11-24T03:15:00Z' });
  return ms;
}

/**
 * The target time as PostgreSQL's recovery_target_time accepts it: a space instead of
 * `T` and a numeric offset instead of `Z` (it refuses zone abbreviations), keeping the
 * user's precision (microseconds matter when transactions are close together).
 */
export function pgTargetTime(text: string): string {
  return text.trim().replace('T', ' ').replace(/z$/i, '+00');
}
