/**
 * Replication decisions, as pure functions: which objects a destination lacks,
 * in which order to copy them so the destination is a valid repository at every
 * instant, and how far behind the destination is (the copy lag).
 *
 * Write order (the same rule as for a backup, see docs/format.md):
 *   1. key slots, then `config` (a repository exists once its config does, and
 *      opening it needs a slot);
 *   2. packs, WAL objects and any object in a directory this build does not know;
 *   3. index files (they name packs);
 *   4. manifests (`snapshots/`) and run records (they name blobs and snapshots).
 * Locks are never copied: they belong to the processes of the source.
 */
import { DIRS } from '../repo/format.ts';
import type { ObjectInfo } from '../storage/types.ts';

export type Phase = 'keys' | 'config' | 'data' | 'index' | 'manifests';

/** Phases in the order they run; a phase starts only when the previous one is complete. */
export const PHASES: readonly Phase[] = ['keys', 'config', 'data', 'index', 'manifests'];

/** The phase an object key belongs to, or undefined for what is never copied (locks). */
export function phaseOf(key: string): Phase | undefined {
  if (key === 'config') return 'config';
  if (key.startsWith(DIRS.locks)) return undefined;
  if (key.startsWith(DIRS.keys)) return 'keys';
  if (key.startsWith(DIRS.index)) return 'index';
  if (key.startsWith(DIRS.snapshots) || key.startsWith(DIRS.runs)) return 'manifests';
  // data/, wal/ and anything a later build adds: nothing in this format names them
  // except index files and manifests, so they go first.
  return 'data';
}

export interface CopyItem {
  key: string;
  size: number;
  mtime: number;
  phase: Phase;
  /** The destination holds an object of another size under this key (a partial copy): overwrite it. */
  replace: boolean;
}

export interface CopyPlan {
  /** Objects to copy, grouped by phase, in phase order. */
  phases: { phase: Phase; items: CopyItem[] }[];
  /** Objects already at the destination with the same size. */
  present: number;
  total: number;
  bytes: number;
}

/**
 * What to copy: every source object (not a lock) that the destination lacks or holds
 * with a different size. Objects are immutable once written (named by content, or
 * written once), so the same key and size means the same object.
 */
export function planCopy(source: Iterable<ObjectInfo>, dest: ReadonlyMap<string, number>): CopyPlan {
  const byPhase = new Map<Phase, CopyItem[]>(PHASES.map((p) => [p, []]));
  let present = 0;
  let total = 0;
  let bytes = 0;
  for (const o of source) {
    const phase = phaseOf(o.key);
    if (phase === undefined) continue;
    const have = dest.get(o.key);
    if (have === o.size) {
      present++;
      continue;
    }
    byPhase.get(phase)!.push({ key: o.key, size: o.size, mtime: o.mtime, phase, replace: have !== undefined });
    total++;
    bytes += o.size;
  }
  // Oldest first inside a phase: WAL and snapshots arrive in the order they were made.
  const phases = PHASES.map((phase) => ({ phase, items: byPhase.get(phase)!.sort((a, b) => a.mtime - b.mtime || a.key.localeCompare(b.key)) })).filter(
    (p) => p.items.length > 0,
  );
  return { phases, present, total, bytes };
}

export type LagKind = 'wal' | 'snapshot';

export interface KindLag {
  /** Source objects of this kind the destination lacks. */
  missing: number;
  /**
   * Seconds since the oldest missing object was stored at the source: how long the
   * destination has been behind. 0 when nothing is missing.
   */
  lagSeconds: number;
  /** Seconds since the newest missing object was stored at the source (0 when none). */
  newestMissingAgeSeconds: number;
  /** Name of the newest object of this kind at the source (WAL file name or snapshot id). */
  newestSource?: string;
  /** Name of the newest missing object. */
  newestMissing?: string;
}

export type CopyLag = Record<LagKind, KindLag>;

function lagKindOf(key: string): LagKind | undefined {
  if (key.startsWith(DIRS.wal)) return 'wal';
  if (key.startsWith(DIRS.snapshots)) return 'snapshot';
  return undefined;
}

/** The last path component: a WAL file name or a snapshot id. */
function baseName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/**
 * The copy lag per kind from the two listings at time `now`. An object of the
 * same size at the destination counts as copied.
 */
export function copyLag(source: Iterable<ObjectInfo>, dest: ReadonlyMap<string, number>, now: number): CopyLag {
  const empty = (): KindLag => ({ missing: 0, lagSeconds: 0, newestMissingAgeSeconds: 0 });
  const out: CopyLag = { wal: empty(), snapshot: empty() };
  const newest: Record<LagKind, number> = { wal: -Infinity, snapshot: -Infinity };
  const oldestMissing: Record<LagKind, number> = { wal: Infinity, snapshot: Infinity };
  const newestMissing: Record<LagKind, number> = { wal: -Infinity, snapshot: -Infinity };
  for (const o of source) {
    const kind = lagKindOf(o.key);
    if (!kind) continue;
    const k = out[kind];
    if (o.mtime > newest[kind] || (o.mtime === newest[kind] && baseName(o.key) > (k.newestSource ?? ''))) {
      newest[kind] = o.mtime;
      k.newestSource = baseName(o.key);
    }
    if (dest.get(o.key) === o.size) continue;
    k.missing++;
    oldestMissing[kind] = Math.min(oldestMissing[kind], o.mtime);
    if (o.mtime >= newestMissing[kind]) {
      newestMissing[kind] = o.mtime;
      k.newestMissing = baseName(o.key);
    }
  }
  for (const kind of ['wal', 'snapshot'] as const) {
    const k = out[kind];
    if (k.missing === 0) continue;
    k.lagSeconds = Math.max(0, (now - oldestMissing[kind]) / 1000);
    k.newestMissingAgeSeconds = Math.max(0, (now - newestMissing[kind]) / 1000);
  }
  return out;
}
