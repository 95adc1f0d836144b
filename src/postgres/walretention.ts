/**
 * Which archived WAL objects expiry may delete: a pure decision, tested with tables.
 *
 * Also owns the timeline model that `pg verify` shares, so the two always agree on
 * what is required (after an expire, verify passes unless something else is gone):
 *
 * - Timeline history: `NNNNNNNN.history` lists, one line each, the ancestors of
 *   timeline N and the LSN at which each was left (`parentTLI <tab> switchLSN <tab> reason`).
 * - A timeline's path (`Lineage`) is its ancestors plus itself, each valid from the
 *   switch point that began it. Replaying towards timeline T, segment number s is
 *   read from the newest timeline on T's path that had begun by s (as PostgreSQL's
 *   XLogFileReadAnyTLI does): the switch segment comes from the child timeline.
 * - A snapshot is on T's path when its timeline is on the path and it started
 *   before that timeline was left.
 * - The anchor of T is the snapshot PITR inside the window starts from: the newest
 *   snapshot on T's path that is consistent at or before the window start (preferring
 *   ones whose own WAL is complete). With no such snapshot, the oldest on the path.
 *   Without a window (verify with no WAL retention set), the oldest on the path.
 *
 * WAL required (never deleted by expiry, reported missing by verify):
 *   1. each kept snapshot's own range, start through stop segment, on its timeline
 *      (the WAL that makes it consistent; durability rule 3);
 *   2. for every timeline T, every segment on T's path from T's anchor's start
 *      segment onward (so every point from the anchor to the end of T replays);
 *   3. every object stored within the window (`now - keepWithin` onward), whatever
 *      it is (a late push of old WAL included);
 *   4. history files of any timeline at or above the lowest kept snapshot's timeline
 *      (PostgreSQL finds the latest timeline by probing upwards until a history file
 *      is missing, so a hole would hide later timelines) and of every ancestor of a
 *      kept snapshot's timeline.
 * When anything needed to apply these rules is unknown (a timeline's history file is
 * missing or unreadable, a kept snapshot has no WAL positions, there is no snapshot
 * at all) the plan deletes nothing and says why.
 */
import type { PgSnapshotMeta } from './meta.ts';
import { formatLsn, lsnSegno, parseLsn, parseWalName, segmentName, type WalKind } from './walname.ts';

// ---- timeline history ----------------------------------------------------------------

export interface HistoryEntry {
  /** An ancestor timeline ... */
  timeline: number;
  /** ... and the LSN at which it was left for the next one. */
  switchLsn: bigint;
  reason: string;
}

/**
 * Parses a timeline history file (`00000003.history`). Throws an Error naming the
 * problem when the text is not a well-formed history of `timeline`.
 */
export function parseTimelineHistory(text: string, timeline: number): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+(.*))?$/.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not "timeline<TAB>switch LSN<TAB>reason"`);
    const e: HistoryEntry = { timeline: Number(m[1]), switchLsn: parseLsn(m[2]), reason: (m[3] ?? '').trim() };
    const prev = out.at(-1);
    if (prev && (e.timeline <= prev.timeline || e.switchLsn < prev.switchLsn)) throw new Error(`line ${i + 1}: timelines and switch points must increase`);
    if (e.timeline >= timeline) throw new Error(`line ${i + 1}: ancestor timeline ${e.timeline} is not older than timeline ${timeline}`);
    out.push(e);
  }
  if (timeline > 1 && out.length === 0) throw new Error('it lists no parent timeline');
  return out;
}

export interface LineageEntry {
  timeline: number;
  /** First LSN on this timeline along the path (0 for the first). */
  begin: bigint;
  /** LSN at which the path leaves this timeline; undefined for the last (open) one. */
  end?: bigint;
}

/** A timeline's path: its ancestors then itself. Timeline 1 needs no history. */
export type Lineage = LineageEntry[];

export function lineageOf(timeline: number, history: readonly HistoryEntry[]): Lineage {
  const out: Lineage = [];
  let begin = 0n;
  for (const h of history) {
    out.push({ timeline: h.timeline, begin, end: h.switchLsn });
    begin = h.switchLsn;
  }
  out.push({ timeline, begin });
  return out;
}

/** The timeline whose file holds segment `segno` when replaying along `lineage`. */
export function timelineForSegno(lineage: Lineage, segno: bigint, segmentSize: number): number {
  for (let i = lineage.length - 1; i >= 0; i--) {
    if (lsnSegno(lineage[i].begin, segmentSize) <= segno) return lineage[i].timeline;
  }
  return lineage[0].timeline;
}

/**
 * The segment numbers each timeline of the path serves, from `from` to `to`
 * (inclusive; `to` undefined = open-ended on the last timeline).
 */
export function pathRanges(lineage: Lineage, from: bigint, to: bigint | undefined, segmentSize: number): { timeline: number; lo: bigint; hi?: bigint }[] {
  const out: { timeline: number; lo: bigint; hi?: bigint }[] = [];
  for (let i = 0; i < lineage.length; i++) {
    const start = lsnSegno(lineage[i].begin, segmentSize);
    const nextStart = i + 1 < lineage.length ? lsnSegno(lineage[i + 1].begin, segmentSize) : undefined;
    const lo = start > from ? start : from;
    let hi = nextStart !== undefined ? nextStart - 1n : to;
    if (hi !== undefined && to !== undefined && to < hi) hi = to;
    if (hi !== undefined && hi < lo) continue;
    out.push({ timeline: lineage[i].timeline, lo, ...(hi !== undefined ? { hi } : {}) });
  }
  return out;
}

// ---- snapshots and archived objects -------------------------------------------------------

/** What WAL decisions need to know of a PostgreSQL snapshot. */
export interface PgSnapshotPoint {
  id: string;
  asset: string;
  /** Timeline of its WAL (the timeline of startWal). */
  timeline: number;
  startSegno: bigint;
  stopSegno: bigint;
  startLsn: bigint;
  stopLsn: bigint;
  /** Consistent point in time (ms): meta.stopTime, else the manifest's endTime. */
  stopTime: number;
  /** Whether the snapshot retention keeps it (verify: always true). */
  kept: boolean;
}

export interface UnusableSnapshot {
  id: string;
  kept: boolean;
  why: string;
}

/** Reads a PostgreSQL manifest's WAL positions; a reason string when they are unusable. */
export function snapshotPoint(
  id: string,
  m: { asset: string; endTime: string; meta?: Record<string, unknown> },
  segmentSize: number,
  kept = true,
): PgSnapshotPoint | UnusableSnapshot {
  const meta = (m.meta ?? {}) as Partial<PgSnapshotMeta>;
  try {
    if (typeof meta.startWal !== 'string' || typeof meta.stopWal !== 'string') throw new Error('no startWal/stopWal');
    const a = parseWalName(meta.startWal, segmentSize);
    const b = parseWalName(meta.stopWal, segmentSize);
    if (a.kind !== 'segment' || b.kind !== 'segment') throw new Error('startWal/stopWal are not segment names');
    if (a.timeline !== b.timeline) throw new Error(`startWal and stopWal are on different timelines`);
    if (b.segno! < a.segno!) throw new Error('stopWal is before startWal');
    const startLsn = typeof meta.startLsn === 'string' ? parseLsn(meta.startLsn) : a.segno! * BigInt(segmentSize);
    const stopLsn = typeof meta.stopLsn === 'string' ? parseLsn(meta.stopLsn) : b.segno! * BigInt(segmentSize);
    const stopTime = Date.parse(typeof meta.stopTime === 'string' ? meta.stopTime : m.endTime);
    if (Number.isNaN(stopTime)) throw new Error('no readable stop time');
    return { id, asset: m.asset, timeline: a.timeline, startSegno: a.segno!, stopSegno: b.segno!, startLsn, stopLsn, stopTime, kept };
  } catch (e) {
    return { id, kept, why: (e as Error).message };
  }
}

export function isUsable(p: PgSnapshotPoint | UnusableSnapshot): p is PgSnapshotPoint {
  return !('why' in p);
}

export interface ArchivedWal {
  /** Storage key, `wal/<TLI>/<name>`. */
  key: string;
  name: string;
  /** `unknown`: not a WAL file name, or stored under the wrong timeline directory. */
  kind: WalKind | 'unknown';
  timeline: number;
  /** For segments, partials and backup history files. */
  segno?: bigint;
  /** Stored bytes. */
  size: number;
  /** When it was stored (ms). */
  time: number;
}

/** Describes a storage listing entry under `wal/`. */
export function archivedWal(key: string, size: number, time: number, segmentSize: number): ArchivedWal {
  const name = key.slice(key.lastIndexOf('/') + 1);
  try {
    const w = parseWalName(name, segmentSize);
    const dir = `wal/${w.timeline.toString(16).toUpperCase().padStart(8, '0')}/`;
    if (key !== dir + name) return { key, name, kind: 'unknown', timeline: w.timeline, size, time };
    return { key, name, kind: w.kind, timeline: w.timeline, ...(w.segno !== undefined ? { segno: w.segno } : {}), size, time };
  } catch {
    return { key, name, kind: 'unknown', timeline: 0, size, time };
  }
}

/** A history file's contents: the parsed entries, or why they could not be read. */
export type HistoryState = HistoryEntry[] | { error: string };

export function historyName(timeline: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

export interface TimelineModel {
  timeline: number;
  /** Undefined when the history file is missing or unreadable (`historyProblem` says which). */
  lineage?: Lineage;
  historyProblem?: string;
}

/**
 * Every timeline the archive or the snapshots mention, with its path. Timeline 1
 * needs no history; any other needs its history file.
 */
export function timelineModels(timelines: Iterable<number>, histories: ReadonlyMap<number, HistoryState>): Map<number, TimelineModel> {
  const out = new Map<number, TimelineModel>();
  for (const t of [...new Set(timelines)].sort((a, b) => a - b)) {
    if (t === 1) {
      out.set(t, { timeline: t, lineage: lineageOf(1, []) });
      continue;
    }
    const h = histories.get(t);
    if (h === undefined) out.set(t, { timeline: t, historyProblem: `history file ${historyName(t)} is not archived` });
    else if (!Array.isArray(h)) out.set(t, { timeline: t, historyProblem: `history file ${historyName(t)} cannot be read: ${h.error}` });
    else out.set(t, { timeline: t, lineage: lineageOf(t, h) });
  }
  return out;
}

/** Whether `s` replays towards the end of the path `lineage`. */
export function onPath(lineage: Lineage, s: PgSnapshotPoint): boolean {
  return lineage.some((e) => e.timeline === s.timeline && (e.end === undefined || s.startLsn < e.end));
}

/** Sorted segment numbers of complete segments per timeline. */
export function presentSegments(objects: readonly ArchivedWal[]): Map<number, bigint[]> {
  const out = new Map<number, bigint[]>();
  for (const o of objects) {
    if (o.kind !== 'segment') continue;
    if (!out.has(o.timeline)) out.set(o.timeline, []);
    out.get(o.timeline)!.push(o.segno!);
  }
  for (const l of out.values()) l.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return out;
}

/** First index in sorted `list` whose value is >= v. */
function lowerBound(list: readonly bigint[], v: bigint): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Ranges of [lo, hi] missing from sorted, duplicate-free `present`. */
export function missingRanges(present: readonly bigint[], lo: bigint, hi: bigint): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  let next = lo;
  for (let i = lowerBound(present, lo); i < present.length && present[i] <= hi; i++) {
    if (present[i] > next) out.push([next, present[i] - 1n]);
    next = present[i] + 1n;
  }
  if (next <= hi) out.push([next, hi]);
  return out;
}

/** Whether every segment of the snapshot's own range is archived. */
export function isConsistent(s: PgSnapshotPoint, present: ReadonlyMap<number, readonly bigint[]>): boolean {
  return missingRanges(present.get(s.timeline) ?? [], s.startSegno, s.stopSegno).length === 0;
}

/**
 * The snapshot PITR on a path starts from (see the module header). `candidates`
 * are the snapshots on the path; undefined when there are none.
 */
export function chooseAnchor(candidates: readonly PgSnapshotPoint[], windowStart: number | undefined, consistent: (s: PgSnapshotPoint) => boolean): PgSnapshotPoint | undefined {
  if (candidates.length === 0) return undefined;
  const good = candidates.filter(consistent);
  const pool = [...(good.length ? good : candidates)].sort((a, b) => a.stopTime - b.stopTime || (a.stopLsn < b.stopLsn ? -1 : a.stopLsn > b.stopLsn ? 1 : 0) || (a.id < b.id ? -1 : 1));
  if (windowStart === undefined) return pool[0];
  return pool.filter((s) => s.stopTime <= windowStart).at(-1) ?? pool[0];
}

/**
 * The anchor of every timeline that reaches into the window (one whose newest
 * object was stored at or after `windowStart`, or that has no object yet), and of
 * the timeline holding the archive's newest object even when archiving has stalled
 * (the path to the latest recoverable point is never given up). Any other timeline
 * ended before the window and holds no point the window promises, so it gets no
 * anchor: only its snapshots' own ranges stay required. With no window, every
 * timeline gets one.
 */
export function pathAnchors(
  models: ReadonlyMap<number, TimelineModel>,
  snapshots: readonly PgSnapshotPoint[],
  objects: readonly ArchivedWal[],
  windowStart: number | undefined,
): Map<number, PgSnapshotPoint> {
  const present = presentSegments(objects);
  const lastStored = new Map<number, number>();
  for (const o of objects) if (o.kind !== 'unknown') lastStored.set(o.timeline, Math.max(lastStored.get(o.timeline) ?? -Infinity, o.time));
  let current: number | undefined;
  for (const [t, last] of lastStored) if (current === undefined || last > lastStored.get(current)! || (last === lastStored.get(current)! && t > current)) current = t;
  const out = new Map<number, PgSnapshotPoint>();
  for (const m of models.values()) {
    if (!m.lineage) continue;
    const last = lastStored.get(m.timeline);
    if (windowStart !== undefined && last !== undefined && last < windowStart && m.timeline !== current) continue;
    const a = chooseAnchor(
      snapshots.filter((s) => onPath(m.lineage!, s)),
      windowStart,
      (s) => isConsistent(s, present),
    );
    if (a) out.set(m.timeline, a);
  }
  return out;
}

// ---- the expiry plan ------------------------------------------------------------------------

export interface WalExpiryInput {
  segmentSize: number;
  /** Every PostgreSQL snapshot with usable WAL positions; `kept` from the snapshot policy. */
  snapshots: readonly PgSnapshotPoint[];
  /** PostgreSQL snapshots whose WAL positions cannot be read. */
  unusable?: readonly UnusableSnapshot[];
  /** Every object under `wal/`. */
  objects: readonly ArchivedWal[];
  /** Parsed history files by timeline (only those archived). */
  histories: ReadonlyMap<number, HistoryState>;
  now: number;
  /** The PITR window (ms): every point from `now - keepWithin` on stays recoverable. */
  keepWithin: number;
}

export interface WalExpiryPlan {
  windowStart: number;
  /** Snapshots the policy would remove but the window needs (the anchors), with why. */
  protect: { id: string; reason: string }[];
  /** Anchors by timeline, for the report. */
  anchors: { timeline: number; snapshot: string }[];
  /** Objects to delete, oldest segments first (history files last). */
  remove: ArchivedWal[];
  keep: { count: number; bytes: number };
  /** When set, nothing may be deleted and this says why. */
  blocked?: string;
  notes: string[];
}

function segCmp(a: ArchivedWal, b: ArchivedWal): number {
  const ah = a.segno === undefined ? 1 : 0;
  const bh = b.segno === undefined ? 1 : 0;
  if (ah !== bh) return ah - bh;
  if (a.segno !== undefined && b.segno !== undefined && a.segno !== b.segno) return a.segno < b.segno ? -1 : 1;
  return a.timeline - b.timeline || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export function planWalExpiry(input: WalExpiryInput): WalExpiryPlan {
  const { segmentSize, snapshots, objects, now, keepWithin } = input;
  const windowStart = now - keepWithin;
  const notes: string[] = [];
  const total = { count: objects.length, bytes: objects.reduce((n, o) => n + o.size, 0) };
  const nothing = (blocked: string): WalExpiryPlan => ({ windowStart, protect: [], anchors: [], remove: [], keep: total, blocked, notes });

  const unknown = objects.filter((o) => o.kind === 'unknown');
  if (unknown.length) notes.push(`${unknown.length} object(s) under wal/ are not WAL files stored under their timeline (kept): ${unknown.slice(0, 3).map((o) => o.key).join(', ')}${unknown.length > 3 ? ', …' : ''}`);

  const badKept = (input.unusable ?? []).filter((u) => u.kept);
  if (badKept.length) return nothing(`snapshot ${badKept[0].id.slice(0, 12)} has no usable WAL positions (${badKept[0].why}), so its WAL cannot be told apart`);
  if (snapshots.length === 0) return nothing('there are no PostgreSQL snapshots; WAL is kept until one exists');

  const timelines = new Set<number>(snapshots.map((s) => s.timeline));
  for (const o of objects) if (o.kind !== 'unknown') timelines.add(o.timeline);
  const models = timelineModels(timelines, input.histories);
  for (const m of models.values()) {
    if (!m.lineage) return nothing(`timeline ${m.timeline}: ${m.historyProblem}, so its path through earlier timelines is unknown`);
  }

  const anchors = pathAnchors(models, snapshots, objects, windowStart);
  const protect = new Map<string, string>();
  for (const a of anchors.values()) {
    if (!a.kept && !protect.has(a.id)) protect.set(a.id, `PITR base: WAL window ${fmtWindow(keepWithin)} starts ${new Date(windowStart).toISOString()}`);
  }
  const kept = snapshots.filter((s) => s.kept || protect.has(s.id));
  const minKeptTimeline = Math.min(...kept.map((s) => s.timeline));
  const ancestors = new Set<number>();
  for (const s of kept) for (const e of models.get(s.timeline)!.lineage!) ancestors.add(e.timeline);

  const required = (o: ArchivedWal): boolean => {
    if (o.kind === 'unknown' || o.time >= windowStart) return true;
    if (o.kind === 'history') return o.timeline >= minKeptTimeline || ancestors.has(o.timeline);
    const seg = o.segno!;
    if (kept.some((s) => s.timeline === o.timeline && s.startSegno <= seg && seg <= s.stopSegno)) return true;
    for (const [t, a] of anchors) {
      if (seg >= a.startSegno && timelineForSegno(models.get(t)!.lineage!, seg, segmentSize) === o.timeline) return true;
    }
    return false;
  };

  const remove: ArchivedWal[] = [];
  const keep = { count: 0, bytes: 0 };
  for (const o of objects) {
    if (required(o)) {
      keep.count++;
      keep.bytes += o.size;
    } else remove.push(o);
  }
  remove.sort(segCmp);
  return {
    windowStart,
    protect: [...protect].map(([id, reason]) => ({ id, reason })),
    anchors: [...anchors].map(([timeline, s]) => ({ timeline, snapshot: s.id })),
    remove,
    keep,
    notes,
  };
}

function fmtWindow(ms: number): string {
  const d = ms / 86_400_000;
  return Number.isInteger(d) ? `${d}d` : `${Math.round(ms / 3_600_000)}h`;
}

// ---- summaries ------------------------------------------------------------------------------

export interface WalRangeSummary {
  timeline: number;
  /** First and last names (segments, partials and backup files in segment order; then history files). */
  first: string;
  last: string;
  count: number;
  bytes: number;
}

/** Summarises objects per timeline as first..last with count and stored bytes. */
export function summariseWal(objects: readonly ArchivedWal[]): WalRangeSummary[] {
  const by = new Map<number, ArchivedWal[]>();
  for (const o of objects) {
    if (!by.has(o.timeline)) by.set(o.timeline, []);
    by.get(o.timeline)!.push(o);
  }
  return [...by.keys()]
    .sort((a, b) => a - b)
    .map((t) => {
      const list = by.get(t)!.sort(segCmp);
      return { timeline: t, first: list[0].name, last: list.at(-1)!.name, count: list.length, bytes: list.reduce((n, o) => n + o.size, 0) };
    });
}

/** The segment name and end LSN of segment `segno` on `timeline`, for reports. */
export function segmentEnd(timeline: number, segno: bigint, segmentSize: number): { segment: string; lsn: string } {
  return { segment: segmentName(timeline, segno, segmentSize), lsn: formatLsn((segno + 1n) * BigInt(segmentSize)) };
}
