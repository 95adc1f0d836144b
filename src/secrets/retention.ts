/**
 * Which secrets versions go: a pure decision, tested with tables. A version older
 * than `keepDays` (by the time it was stored) is removed, except the newest, which
 * is the value in force and is never removed whatever its age.
 */
import { DAY_MS } from '../util/clock.ts';

export interface VersionTime {
  id: string;
  /** ISO time the version was stored. */
  time: string;
}

export interface SecretsExpiryPlan {
  keep: (VersionTime & { reason: string })[];
  remove: (VersionTime & { reason: string })[];
  /** Versions stored before this time are removed (ISO). */
  cutoff: string;
}

export function planSecretsExpiry(versions: readonly VersionTime[], keepDays: number, now: number): SecretsExpiryPlan {
  const cutoff = now - keepDays * DAY_MS;
  const sorted = [...versions].sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
  const plan: SecretsExpiryPlan = { keep: [], remove: [], cutoff: new Date(cutoff).toISOString() };
  sorted.forEach((v, i) => {
    const age = Math.floor((now - Date.parse(v.time)) / DAY_MS);
    if (i === sorted.length - 1) plan.keep.push({ ...v, reason: Date.parse(v.time) < cutoff ? `newest version (kept whatever its age, ${age} days)` : 'newest version' });
    else if (Date.parse(v.time) < cutoff) plan.remove.push({ ...v, reason: `older than ${keepDays} days (${age} days)` });
    else plan.keep.push({ ...v, reason: `within ${keepDays} days` });
  });
  return plan;
}
