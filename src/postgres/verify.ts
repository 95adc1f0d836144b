/**
 * `pg verify`: does the WAL archive hold what the PostgreSQL snapshots and the
 * PITR promise need?
 *
 * - every snapshot's own WAL (start through stop segment) is archived, so it can
 *   be made consistent;
 * - along every timeline's path (timeline switches followed through history
 *   files), the archive has no gap from the path's anchor (see walretention.ts:
 *   the oldest snapshot, or with a WAL retention window the snapshot the window
 *   starts from) to the newest archived segment;
 * - every timeline other than 1 that holds WAL or snapshots has a readable history file.
 * It also reports each timeline's recoverable windows: from a snapshot's consistent
 * point to the end of the last segment that replays without a gap.
 *
 * `verifyArchive` is pure (tested with tables); `loadWalArchive` does the reading:
 * it lists `wal/` and opens only history files (segments are judged by name).
 */
import { listSnapshots, type SnapshotRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { listAll } from '../storage/types.ts';
import { mapLimit } from '../util/concurrency.ts';
import { ConfigError, NotFoundError, StorageError, errorMessage } from '../util/errors.ts';
import { fetchWal } from './wal.ts';
import {
  archivedWal,
  isConsistent,
  isUsable,
  missingRanges,
  onPath,
  parseTimelineHistory,
  pathAnchors,
  pathRanges,
  presentSegments,
  segmentEnd,
  snapshotPoint,
  timelineForSegno,
  timelineModels,
  type ArchivedWal,
  type HistoryState,
  type PgSnapshotPoint,
  type UnusableSnapshot,
} from './walretention.ts';
import { formatLsn, segmentName } from './walname.ts';

export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

export interface VerifyInput {
  segmentSize: number;
  snapshots: readonly PgSnapshotPoint[];
  unusable?: readonly UnusableSnapshot[];
  objects: readonly ArchivedWal[];
  histories: ReadonlyMap<number, HistoryState>;
  /** Start of the PITR window (ms) when a WAL retention is set; undefined: require WAL from the oldest snapshot on. */
  windowStart?: number;
}

export type ProblemKind = 'snapshot-wal' | 'gap' | 'history' | 'snapshot-meta';

export interface Problem {
  kind: ProblemKind;
  /** One line, for humans. */
  message: string;
  timeline?: number;
  snapshot?: string;
  first?: string;
  last?: string;
  count?: number;
}

export interface RecoveryWindow {
  /** The consistent point of the snapshot the window starts from. */
  from: { snapshot: string; timeline: number; lsn: string; time: string };
  /** The end of the last segment that replays without a gap; `time` is when it was stored. */
  to: { timeline: number; segment: string; lsn: string; time?: string };
}

export interface TimelineReport {
  timeline: number;
  /** From the history file: the timeline this one branched from and where. */
  parent?: number;
  switchLsn?: string;
  history: 'not needed' | 'archived' | 'missing' | 'unreadable';
  segments: number;
  bytes: number;
  first?: string;
  last?: string;
  /** The snapshot continuity is checked from, when the timeline needs one. */
  anchor?: string;
  windows: RecoveryWindow[];
}

export interface SnapshotReport {
  id: string;
  asset: string;
  timeline: number;
  startWal: string;
  stopWal: string;
  stopTime: string;
  consistent: boolean;
  /** Segments of its own range not archived. */
  missing: number;
}

export interface VerifyReport {
  ok: boolean;
  windowStart?: string;
  snapshots: SnapshotReport[];
  timelines: TimelineReport[];
  problems: Problem[];
  notes: string[];
}

function rangeText(timeline: number, a: bigint, b: bigint, segmentSize: number): string {
  const first = segmentName(timeline, a, segmentSize);
  return a === b ? first : `${first}..${segmentName(timeline, b, segmentSize)}`;
}

function count(a: bigint, b: bigint): number {
  return Number(b - a + 1n);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Merges overlapping or adjacent ranges. */
function mergeRanges(list: [bigint, bigint][]): [bigint, bigint][] {
  const sorted = [...list].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r[0] <= last[1] + 1n) {
      if (r[1] > last[1]) last[1] = r[1];
    } else out.push([r[0], r[1]]);
  }
  return out;
}

export function verifyArchive(input: VerifyInput): VerifyReport {
  const { segmentSize: size, snapshots, objects, histories, windowStart } = input;
  const problems: Problem[] = [];
  const notes: string[] = [];
  const present = presentSegments(objects);
  const byName = new Map<string, ArchivedWal>();
  for (const o of objects) if (o.segno !== undefined) byName.set(`${o.timeline}:${o.kind}:${o.segno}`, o);

  const unknown = objects.filter((o) => o.kind === 'unknown');
  if (unknown.length) notes.push(`${unknown.length} object(s) under wal/ are not WAL files stored under their timeline (ignored): ${unknown.slice(0, 3).map((o) => o.key).join(', ')}${unknown.length > 3 ? ', …' : ''}`);
  if (snapshots.length === 0 && !(input.unusable ?? []).length) notes.push('there are no PostgreSQL snapshots: nothing in the archive can be replayed yet');

  for (const u of input.unusable ?? []) {
    problems.push({ kind: 'snapshot-meta', snapshot: u.id, message: `snapshot ${u.id.slice(0, 12)} has no usable WAL positions in its metadata (${u.why})` });
  }

  // 1. Each snapshot's own WAL.
  const snapReports: SnapshotReport[] = [];
  for (const s of [...snapshots].sort((a, b) => a.stopTime - b.stopTime || (a.id < b.id ? -1 : 1))) {
    const miss = missingRanges(present.get(s.timeline) ?? [], s.startSegno, s.stopSegno);
    const missing = miss.reduce((n, [a, b]) => n + count(a, b), 0);
    snapReports.push({
      id: s.id,
      asset: s.asset,
      timeline: s.timeline,
      startWal: segmentName(s.timeline, s.startSegno, size),
      stopWal: segmentName(s.timeline, s.stopSegno, size),
      stopTime: iso(s.stopTime),
      consistent: missing === 0,
      missing,
    });
    if (missing) {
      const total = count(s.startSegno, s.stopSegno);
      problems.push({
        kind: 'snapshot-wal',
        snapshot: s.id,
        timeline: s.timeline,
        first: segmentName(s.timeline, miss[0][0], size),
        last: segmentName(s.timeline, miss.at(-1)![1], size),
        count: missing,
        message: `snapshot ${s.id.slice(0, 12)} (${s.asset}, ${iso(s.stopTime)}) cannot be made consistent: WAL ${miss.map(([a, b]) => rangeText(s.timeline, a, b, size)).join(', ')} is not archived (${missing} of ${total} segment${total === 1 ? '' : 's'})`,
      });
    }
  }

  // 2. Timelines and their paths.
  const timelines = new Set<number>(snapshots.map((s) => s.timeline));
  for (const o of objects) if (o.kind !== 'unknown') timelines.add(o.timeline);
  const models = timelineModels(timelines, histories);
  for (const m of models.values()) {
    if (m.historyProblem) problems.push({ kind: 'history', timeline: m.timeline, message: `timeline ${m.timeline}: ${m.historyProblem}, so its switch from an earlier timeline cannot be followed` });
  }
  // A timeline whose history is unknown is checked on its own (as if it had no ancestors).
  const lineageFor = (t: number) => models.get(t)!.lineage ?? [{ timeline: t, begin: 0n }];
  const known = new Map([...models].map(([t, m]) => [t, m.lineage ? m : { ...m, lineage: lineageFor(t) }]));
  const anchors = pathAnchors(known, snapshots, objects, windowStart);

  // 3. Continuity from each anchor to the newest segment of its timeline.
  const gaps = new Map<number, [bigint, bigint][]>();
  for (const [t, anchor] of anchors) {
    const newest = present.get(t)?.at(-1);
    if (newest === undefined) continue;
    for (const r of pathRanges(lineageFor(t), anchor.startSegno, newest, size)) {
      const miss = missingRanges(present.get(r.timeline) ?? [], r.lo, r.hi!);
      if (miss.length) gaps.set(r.timeline, [...(gaps.get(r.timeline) ?? []), ...miss]);
    }
  }
  for (const t of [...gaps.keys()].sort((a, b) => a - b)) {
    for (const [a, b] of mergeRanges(gaps.get(t)!)) {
      problems.push({
        kind: 'gap',
        timeline: t,
        first: segmentName(t, a, size),
        last: segmentName(t, b, size),
        count: count(a, b),
        message: `timeline ${t}: WAL ${rangeText(t, a, b, size)} is not archived (${count(a, b)} segment${a === b ? '' : 's'}); replay from earlier snapshots stops at ${formatLsn(a * BigInt(size))}`,
      });
    }
  }

  // 4. Recoverable windows per timeline.
  const reports: TimelineReport[] = [];
  for (const [t, m] of models) {
    const mine = objects.filter((o) => o.timeline === t && o.kind !== 'unknown');
    const segs = present.get(t) ?? [];
    const h = histories.get(t);
    const rep: TimelineReport = {
      timeline: t,
      history: t === 1 ? 'not needed' : h === undefined ? 'missing' : Array.isArray(h) ? 'archived' : 'unreadable',
      segments: segs.length,
      bytes: mine.reduce((n, o) => n + o.size, 0),
      ...(segs.length ? { first: segmentName(t, segs[0], size), last: segmentName(t, segs.at(-1)!, size) } : {}),
      ...(anchors.has(t) ? { anchor: anchors.get(t)!.id } : {}),
      windows: [],
    };
    if (m.lineage && m.lineage.length > 1) {
      const parent = m.lineage.at(-2)!;
      rep.parent = parent.timeline;
      rep.switchLsn = formatLsn(parent.end!);
    }
    const newest = segs.at(-1);
    const lineage = lineageFor(t);
    if (newest !== undefined) {
      const starts = snapshots
        .filter((s) => onPath(lineage, s) && isConsistent(s, present))
        .sort((a, b) => (a.stopLsn < b.stopLsn ? -1 : a.stopLsn > b.stopLsn ? 1 : a.stopTime - b.stopTime));
      let cur: { s: PgSnapshotPoint; reach: bigint } | undefined;
      const flush = () => {
        if (!cur) return;
        const tl = timelineForSegno(lineage, cur.reach, size);
        const end = segmentEnd(tl, cur.reach, size);
        const obj = byName.get(`${tl}:segment:${cur.reach}`);
        rep.windows.push({
          from: { snapshot: cur.s.id, timeline: cur.s.timeline, lsn: formatLsn(cur.s.stopLsn), time: iso(cur.s.stopTime) },
          to: { timeline: tl, segment: end.segment, lsn: end.lsn, ...(obj ? { time: iso(obj.time) } : {}) },
        });
      };
      for (const s of starts) {
        let reach = s.startSegno - 1n;
        for (const r of pathRanges(lineage, s.startSegno, newest, size)) {
          const miss = missingRanges(present.get(r.timeline) ?? [], r.lo, r.hi!);
          if (miss.length) {
            reach = miss[0][0] - 1n;
            break;
          }
          reach = r.hi!;
        }
        if (reach < s.stopSegno) continue;
        if (cur && s.stopSegno <= cur.reach) {
          if (reach > cur.reach) cur.reach = reach;
        } else {
          flush();
          cur = { s, reach };
        }
      }
      flush();
      if (!starts.length && segs.length) notes.push(`timeline ${t}: WAL is archived but no consistent snapshot precedes it, so it cannot be replayed yet`);
    }
    if (windowStart !== undefined && !anchors.has(t) && segs.length) {
      notes.push(`timeline ${t} ended before the PITR window (${iso(windowStart)}): only its snapshots' own WAL is required`);
    }
    reports.push(rep);
  }

  return {
    ok: problems.length === 0,
    ...(windowStart !== undefined ? { windowStart: iso(windowStart) } : {}),
    snapshots: snapReports,
    timelines: reports,
    problems,
    notes,
  };
}

// ---- reading the archive ----------------------------------------------------------------

export interface WalArchive {
  segmentSize: number;
  snapshots: PgSnapshotPoint[];
  unusable: UnusableSnapshot[];
  objects: ArchivedWal[];
  histories: Map<number, HistoryState>;
}

/** The WAL segment size the snapshots agree on (16 MiB when there are none). */
export function archiveSegmentSize(refs: readonly SnapshotRef[]): number {
  const sizes = new Set<number>();
  for (const r of refs) {
    const v = (r.manifest.meta ?? {}).walSegmentSize;
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) sizes.add(v);
  }
  if (sizes.size > 1) {
    throw new ConfigError(`PostgreSQL snapshots in this repository disagree on the WAL segment size (${[...sizes].join(', ')} bytes)`, {
      hint: 'one repository holds the WAL of one cluster; give each cluster its own repository',
    });
  }
  return sizes.size ? [...sizes][0] : DEFAULT_SEGMENT_SIZE;
}

/**
 * Reads what WAL decisions need: PostgreSQL snapshots (`refs`, else listed), every
 * object under `wal/`, and the parsed history files. `kept` marks snapshots the
 * snapshot retention keeps (default: all).
 */
export async function loadWalArchive(repo: Repository, opts: { refs?: readonly SnapshotRef[]; kept?: (id: string) => boolean } = {}): Promise<WalArchive> {
  const refs = (opts.refs ?? (await listSnapshots(repo, { kind: 'postgres' }))).filter((r) => r.manifest.kind === 'postgres');
  const segmentSize = archiveSegmentSize(refs);
  const snapshots: PgSnapshotPoint[] = [];
  const unusable: UnusableSnapshot[] = [];
  for (const r of refs) {
    const p = snapshotPoint(r.id, r.manifest, segmentSize, opts.kept ? opts.kept(r.id) : true);
    if (isUsable(p)) snapshots.push(p);
    else unusable.push(p);
  }
  const objects: ArchivedWal[] = [];
  for await (const o of listAll(repo.storage, 'wal/')) objects.push(archivedWal(o.key, o.size, o.mtime, segmentSize));
  objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const histories = new Map<number, HistoryState>();
  await mapLimit(
    objects.filter((o) => o.kind === 'history'),
    8,
    async (o) => {
      try {
        const text = (await fetchWal(repo, o.name)).toString('utf8');
        histories.set(o.timeline, parseTimelineHistory(text, o.timeline));
      } catch (e) {
        if (e instanceof NotFoundError) return; // deleted meanwhile: reported as missing
        if (e instanceof StorageError) throw e; // the backend failed, not the file
        histories.set(o.timeline, { error: errorMessage(e) });
      }
    },
  );
  return { segmentSize, snapshots, unusable, objects, histories };
}

