/**
 * WAL expiry decisions (src/postgres/walretention.ts), table-driven: one timeline,
 * timeline switches, an abandoned branch, gaps, late pushes, stalled archiving,
 * and the cases where nothing may be deleted. Every plan is also checked against
 * `pg verify`: after deleting what the plan says, the archive must still verify.
 *
 * The model archive: one segment an hour, segment s stored at NOW - (240 - s) hours,
 * so segment 240 is the newest and 7 days ago is segment 72.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  archivedWal,
  lineageOf,
  missingRanges,
  parseTimelineHistory,
  pathRanges,
  planWalExpiry,
  summariseWal,
  timelineForSegno,
  type ArchivedWal,
  type HistoryState,
  type PgSnapshotPoint,
  type WalExpiryInput,
} from '../../src/postgres/walretention.ts';
import { verifyArchive } from '../../src/postgres/verify.ts';
import { formatLsn, segmentName } from '../../src/postgres/walname.ts';

const SEG = 16 * 1024 * 1024;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 2, 1, 0, 0);
const at = (s: number) => NOW - (240 - s) * HOUR;
const tliHex = (t: number) => t.toString(16).toUpperCase().padStart(8, '0');

function seg(tli: number, s: number, time = at(s), suffix = ''): ArchivedWal {
  const name = segmentName(tli, BigInt(s), SEG) + suffix;
  return archivedWal(`wal/${tliHex(tli)}/${name}`, 1000 + s, time, SEG);
}
function segs(tli: number, from: number, to: number, time: (s: number) => number = at): ArchivedWal[] {
  const out: ArchivedWal[] = [];
  for (let s = from; s <= to; s++) out.push(seg(tli, s, time(s)));
  return out;
}
function hist(tli: number, time: number): ArchivedWal {
  return archivedWal(`wal/${tliHex(tli)}/${tliHex(tli)}.history`, 60, time, SEG);
}
/** A snapshot starting in segment `start` and consistent at the end of `stop`'s first page, at the time `stop` was stored. */
function snap(id: string, tli: number, start: number, stop: number, kept = true, stopTime = at(stop)): PgSnapshotPoint {
  return { id, asset: 'main', timeline: tli, startSegno: BigInt(start), stopSegno: BigInt(stop), startLsn: BigInt(start) * BigInt(SEG) + 0x28n, stopLsn: BigInt(stop) * BigInt(SEG) + 0x100n, stopTime, kept };
}
/** Daily snapshots k = from..to on `tli`: segments 24k+3 .. 24k+4. */
function daily(tli: number, from: number, to: number, kept: (k: number) => boolean = () => true): PgSnapshotPoint[] {
  const out: PgSnapshotPoint[] = [];
  for (let k = from; k <= to; k++) out.push(snap(`k${k}`, tli, 24 * k + 3, 24 * k + 4, kept(k)));
  return out;
}
const switchAt = (s: number) => BigInt(s) * BigInt(SEG) + 0x1000n;
function histories(spec: Record<number, [parent: number, switchSeg: number][]>): Map<number, HistoryState> {
  const m = new Map<number, HistoryState>();
  for (const [t, entries] of Object.entries(spec)) m.set(Number(t), entries.map(([p, s]) => ({ timeline: p, switchLsn: switchAt(s), reason: 'test' })));
  return m;
}

/** Names removed, compressed to "tli:first-last" runs for readable tables. */
function runs(list: readonly ArchivedWal[]): string[] {
  const out: string[] = [];
  let cur: { t: number; a: bigint; b: bigint; suffix: string } | undefined;
  const flush = () => cur && out.push(`${cur.t}:${cur.a}${cur.a === cur.b ? '' : `-${cur.b}`}${cur.suffix}`);
  for (const o of [...list].sort((x, y) => x.timeline - y.timeline || (x.name < y.name ? -1 : 1))) {
    if (o.segno === undefined) {
      flush();
      cur = undefined;
      out.push(`${o.timeline}:${o.kind}`);
      continue;
    }
    const suffix = o.kind === 'segment' ? '' : `.${o.kind}`;
    if (cur && cur.t === o.timeline && cur.suffix === suffix && o.segno === cur.b + 1n) cur.b = o.segno;
    else {
      flush();
      cur = { t: o.timeline, a: o.segno, b: o.segno, suffix };
    }
  }
  flush();
  return out;
}

function plan(input: Omit<WalExpiryInput, 'segmentSize' | 'now'> & { now?: number }) {
  return planWalExpiry({ segmentSize: SEG, now: NOW, ...input });
}

/** After deleting what the plan says, verify with the same window must find nothing missing. */
function assertStillVerifies(input: Omit<WalExpiryInput, 'segmentSize' | 'now'>, p: ReturnType<typeof planWalExpiry>) {
  const gone = new Set(p.remove.map((o) => o.key));
  const kept = input.snapshots.filter((s) => s.kept || p.protect.some((x) => x.id === s.id)).map((s) => ({ ...s, kept: true }));
  const r = verifyArchive({ segmentSize: SEG, snapshots: kept, objects: input.objects.filter((o) => !gone.has(o.key)), histories: input.histories, windowStart: p.windowStart });
  const before = verifyArchive({ segmentSize: SEG, snapshots: kept, objects: input.objects, histories: input.histories, windowStart: p.windowStart });
  // Expiry must not add problems (pre-existing gaps stay what they were).
  assert.deepEqual(
    r.problems.map((x) => x.message),
    before.problems.map((x) => x.message),
    `expire added verify problems:\n${r.problems.map((x) => x.message).join('\n')}`,
  );
}

describe('timeline history files', () => {
  it('parses parents and switch points, skipping comments and blank lines', () => {
    const text = '1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5A0000D8\tbefore 2026-02-27 10:00:00+00\n';
    assert.deepEqual(parseTimelineHistory(text, 3), [
      { timeline: 1, switchLsn: 0x3000158n, reason: 'no recovery target specified' },
      { timeline: 2, switchLsn: 0x5a0000d8n, reason: 'before 2026-02-27 10:00:00+00' },
    ]);
  });
  const bad: [string, string, number, RegExp][] = [
    ['garbage', 'hello world\n', 2, /line 1 is not/],
    ['no parent', '# only a comment\n', 2, /lists no parent/],
    ['parent not older', '2\t0/3000000\tx\n', 2, /not older than timeline 2/],
    ['decreasing switch points', '1\t0/5000000\tx\n2\t0/3000000\ty\n', 3, /must increase/],
    ['repeated timeline', '1\t0/3000000\tx\n1\t0/5000000\ty\n', 3, /must increase/],
  ];
  for (const [name, text, t, re] of bad) it(`refuses ${name}`, () => assert.throws(() => parseTimelineHistory(text, t), re));

  it('maps segments to the timeline that serves them along a path (the switch segment from the child)', () => {
    const l = lineageOf(3, [
      { timeline: 1, switchLsn: switchAt(10), reason: '' },
      { timeline: 2, switchLsn: BigInt(20) * BigInt(SEG), reason: '' }, // exactly at a segment boundary
    ]);
    const table: [number, number][] = [
      [0, 1],
      [9, 1],
      [10, 2],
      [19, 2],
      [20, 3],
      [500, 3],
    ];
    for (const [s, t] of table) assert.equal(timelineForSegno(l, BigInt(s), SEG), t, `segment ${s}`);
    assert.deepEqual(pathRanges(l, 5n, 30n, SEG), [
      { timeline: 1, lo: 5n, hi: 9n },
      { timeline: 2, lo: 10n, hi: 19n },
      { timeline: 3, lo: 20n, hi: 30n },
    ]);
    assert.deepEqual(pathRanges(l, 15n, undefined, SEG), [
      { timeline: 2, lo: 15n, hi: 19n },
      { timeline: 3, lo: 20n },
    ]);
  });

  it('finds missing ranges', () => {
    const p = [1n, 2n, 3n, 7n, 8n, 10n];
    assert.deepEqual(missingRanges(p, 1n, 10n), [
      [4n, 6n],
      [9n, 9n],
    ]);
    assert.deepEqual(missingRanges(p, 0n, 12n), [
      [0n, 0n],
      [4n, 6n],
      [9n, 9n],
      [11n, 12n],
    ]);
    assert.deepEqual(missingRanges([], 5n, 6n), [[5n, 6n]]);
    assert.deepEqual(missingRanges(p, 7n, 8n), []);
  });

  it('describes stored objects, and treats misplaced or foreign names as unknown', () => {
    assert.equal(archivedWal('wal/00000001/000000010000000000000003', 1, 0, SEG).kind, 'segment');
    assert.equal(archivedWal('wal/00000001/000000010000000000000003.partial', 1, 0, SEG).kind, 'partial');
    assert.equal(archivedWal('wal/00000001/000000010000000000000003.00000028.backup', 1, 0, SEG).segno, 3n);
    assert.equal(archivedWal('wal/00000002/00000002.history', 1, 0, SEG).kind, 'history');
    assert.equal(archivedWal('wal/00000002/000000010000000000000003', 1, 0, SEG).kind, 'unknown');
    assert.equal(archivedWal('wal/00000001/notes.txt', 1, 0, SEG).kind, 'unknown');
  });
});

interface Case {
  name: string;
  input: Omit<WalExpiryInput, 'segmentSize' | 'now'>;
  remove: string[];
  protect?: string[];
  anchors?: Record<number, string>;
  blocked?: RegExp;
}

const oneTimeline = segs(1, 1, 240);
const W7 = 7 * DAY;

const cases: Case[] = [
  {
    name: 'one timeline, all snapshots kept: WAL between the older snapshots goes, their own ranges stay, all from the window base on stays',
    input: { snapshots: daily(1, 0, 9), objects: oneTimeline, histories: new Map(), keepWithin: W7 },
    remove: ['1:1-2', '1:5-26', '1:29-50'],
    anchors: { 1: 'k2' },
  },
  {
    name: 'older snapshots removed by the policy: their WAL goes too',
    input: { snapshots: daily(1, 0, 9, (k) => k >= 2), objects: oneTimeline, histories: new Map(), keepWithin: W7 },
    remove: ['1:1-50'],
  },
  {
    name: 'the window base is protected when the policy would remove it',
    input: { snapshots: daily(1, 0, 9, (k) => k >= 5), objects: oneTimeline, histories: new Map(), keepWithin: W7 },
    remove: ['1:1-50'],
    protect: ['k2'],
  },
  {
    name: 'a base whose own WAL is incomplete is passed over for an older complete one',
    input: { snapshots: daily(1, 0, 9), objects: oneTimeline.filter((o) => o.segno !== 52n), histories: new Map(), keepWithin: W7 },
    remove: ['1:1-2', '1:5-26'],
    anchors: { 1: 'k1' },
  },
  {
    name: 'a gap after the base changes nothing: everything from the base on stays',
    input: { snapshots: daily(1, 0, 9, (k) => k >= 2), objects: oneTimeline.filter((o) => o.segno! < 60n || o.segno! > 65n), histories: new Map(), keepWithin: W7 },
    remove: ['1:1-50'],
  },
  {
    name: 'a late push of old WAL (stored inside the window) stays',
    input: { snapshots: daily(1, 0, 9, (k) => k >= 2), objects: [...oneTimeline.filter((o) => o.segno !== 10n), seg(1, 10, NOW - HOUR)], histories: new Map(), keepWithin: W7 },
    remove: ['1:1-9', '1:11-50'],
  },
  {
    name: 'a window longer than the history: nothing stored inside it goes, the oldest snapshot is the base',
    input: { snapshots: daily(1, 0, 9, (k) => k >= 8), objects: oneTimeline, histories: new Map(), keepWithin: 30 * DAY },
    remove: [],
    protect: ['k0'],
  },
  {
    name: 'archiving stalled 20 days ago: the path to the last archived point is kept',
    input: {
      snapshots: daily(1, 0, 9, (k) => k === 8).map((s) => ({ ...s, stopTime: s.stopTime - 20 * DAY })),
      objects: segs(1, 1, 240, (s) => at(s) - 20 * DAY),
      histories: new Map(),
      keepWithin: W7,
    },
    remove: ['1:1-194', '1:197-218'],
    protect: ['k9'],
    anchors: { 1: 'k9' },
  },
  {
    name: 'backup history and partial files follow their segment',
    input: {
      snapshots: daily(1, 0, 9, (k) => k >= 2),
      objects: [...oneTimeline, seg(1, 3, at(3), '.00000028.backup'), seg(1, 51, at(51), '.00000028.backup')],
      histories: new Map(),
      keepWithin: W7,
    },
    remove: ['1:1-3', '1:3.backup', '1:4-50'],
  },
  {
    name: 'switch 1→2 inside the window: timeline 1 up to the switch, its .partial, and all of 2 stay',
    input: {
      snapshots: [...daily(1, 0, 6), ...daily(2, 7, 9)],
      objects: [...segs(1, 1, 149), seg(1, 150, at(150), '.partial'), hist(2, at(150)), ...segs(2, 150, 240)],
      histories: histories({ 2: [[1, 150]] }),
      keepWithin: W7,
    },
    remove: ['1:1-2', '1:5-26', '1:29-50'],
    anchors: { 1: 'k2', 2: 'k2' },
  },
  {
    name: 'switch 1→2 before the window: timeline 1 keeps only snapshot ranges, 2 from its base on',
    input: {
      snapshots: [...daily(1, 0, 6), ...daily(2, 7, 9)],
      objects: [...segs(1, 1, 149), seg(1, 150, at(150), '.partial'), hist(2, at(150)), ...segs(2, 150, 240)],
      histories: histories({ 2: [[1, 150]] }),
      keepWithin: 2 * DAY,
    },
    remove: ['1:1-2', '1:5-26', '1:29-50', '1:53-74', '1:77-98', '1:101-122', '1:125-146', '1:149', '1:150.partial', '2:150-170'],
    anchors: { 2: 'k7' },
  },
  {
    name: 'switch before the window, only timeline 2 snapshots kept: all of timeline 1 goes, the history file stays',
    input: {
      snapshots: [...daily(1, 0, 6, () => false), ...daily(2, 7, 9)],
      objects: [...segs(1, 1, 149), seg(1, 150, at(150), '.partial'), hist(2, at(150)), ...segs(2, 150, 240)],
      histories: histories({ 2: [[1, 150]] }),
      keepWithin: 2 * DAY,
    },
    remove: ['1:1-149', '1:150.partial', '2:150-170'],
  },
  {
    name: 'switch inside the window with the base on timeline 1: the switch segment comes from timeline 2 and stays',
    input: {
      snapshots: daily(1, 0, 6, (k) => k >= 5),
      objects: [...segs(1, 1, 149), hist(2, at(150)), ...segs(2, 150, 240)],
      histories: histories({ 2: [[1, 150]] }),
      keepWithin: 4 * DAY,
    },
    // window from segment 144: base k5 (stop 124), so timeline 1 from 123 on stays
    remove: ['1:1-122'],
    anchors: { 1: 'k5', 2: 'k5' },
  },
  {
    name: 'a branch abandoned inside the window keeps its points (timeline 1 past the fork)',
    input: {
      // Timeline 2 forked from 1 at segment 200 (a PITR to before an incident); timeline 1 went on to 215.
      snapshots: daily(1, 0, 8),
      objects: [...segs(1, 1, 215), hist(2, at(216)), ...segs(2, 200, 240, (s) => at(Math.max(s, 216)))],
      histories: histories({ 2: [[1, 200]] }),
      keepWithin: W7,
    },
    remove: ['1:1-2', '1:5-26', '1:29-50'],
    anchors: { 1: 'k2', 2: 'k2' },
  },
  {
    name: 'a branch abandoned before the window: its segments and its history file go when no kept snapshot needs them',
    input: {
      // Timeline 2 forked from 1 at 20 and was abandoned at 25; timeline 3 forked from 1 at 30 and is live.
      snapshots: [...daily(1, 0, 0, () => false), snap('t3a', 3, 40, 41), snap('t3b', 3, 200, 201)],
      objects: [...segs(1, 1, 29), hist(2, at(20)), ...segs(2, 20, 25), hist(3, at(30)), ...segs(3, 30, 240)],
      histories: histories({ 2: [[1, 20]], 3: [[1, 30]] }),
      keepWithin: 1 * DAY,
    },
    remove: ['1:1-29', '2:20-25', '3:30-39', '3:42-199', '2:history'],
    anchors: { 3: 't3b' },
  },
  {
    name: 'history files of timelines at or above the lowest kept snapshot stay (recovery probes upwards)',
    input: {
      snapshots: [snap('t1', 1, 3, 4), snap('t3', 3, 200, 201)],
      objects: [...segs(1, 1, 29), hist(2, at(20)), ...segs(2, 20, 25), hist(3, at(30)), ...segs(3, 30, 240)],
      histories: histories({ 2: [[1, 20]], 3: [[1, 30]] }),
      keepWithin: 1 * DAY,
    },
    remove: ['1:1-2', '1:5-29', '2:20-25', '3:30-199'],
  },
  {
    name: 'unknown objects under wal/ are never deleted',
    input: {
      snapshots: daily(1, 0, 9, (k) => k >= 2),
      objects: [...oneTimeline, archivedWal('wal/00000001/README', 5, 0, SEG), archivedWal('wal/00000002/000000010000000000000001', 5, 0, SEG)],
      histories: new Map(),
      keepWithin: W7,
    },
    remove: ['1:1-50'],
  },
  {
    name: 'no snapshots: nothing is deleted',
    input: { snapshots: [], objects: oneTimeline, histories: new Map(), keepWithin: W7 },
    remove: [],
    blocked: /no PostgreSQL snapshots/,
  },
  {
    name: 'a timeline without its history file: nothing is deleted',
    input: { snapshots: daily(1, 0, 9), objects: [...segs(1, 1, 149), ...segs(2, 150, 240)], histories: new Map(), keepWithin: W7 },
    remove: [],
    blocked: /timeline 2: history file 00000002\.history is not archived/,
  },
  {
    name: 'an unreadable history file: nothing is deleted',
    input: { snapshots: daily(1, 0, 9), objects: [...segs(1, 1, 149), hist(2, at(150)), ...segs(2, 150, 240)], histories: new Map([[2, { error: 'failed authentication' }]]), keepWithin: W7 },
    remove: [],
    blocked: /cannot be read: failed authentication/,
  },
  {
    name: 'a kept snapshot without WAL positions: nothing is deleted',
    input: { snapshots: daily(1, 0, 9), unusable: [{ id: 'odd', kept: true, why: 'no startWal/stopWal' }], objects: oneTimeline, histories: new Map(), keepWithin: W7 },
    remove: [],
    blocked: /odd has no usable WAL positions/,
  },
  {
    name: 'a removed snapshot without WAL positions does not block',
    input: { snapshots: daily(1, 0, 9, (k) => k >= 2), unusable: [{ id: 'odd', kept: false, why: 'no startWal/stopWal' }], objects: oneTimeline, histories: new Map(), keepWithin: W7 },
    remove: ['1:1-50'],
  },
];

describe('planWalExpiry', () => {
  for (const c of cases) {
    it(c.name, () => {
      const p = plan(c.input);
      assert.deepEqual(runs(p.remove).sort(), [...c.remove].sort(), 'removed');
      assert.deepEqual(p.protect.map((x) => x.id), c.protect ?? [], 'protected');
      if (c.anchors) assert.deepEqual(Object.fromEntries(p.anchors.map((a) => [a.timeline, a.snapshot])), c.anchors, 'anchors');
      if (c.blocked) assert.match(p.blocked ?? '', c.blocked);
      else assert.equal(p.blocked, undefined);
      // Invariants, whatever the case.
      const required = c.input.snapshots.filter((s) => s.kept || p.protect.some((x) => x.id === s.id));
      for (const o of p.remove) {
        assert.ok(o.time < p.windowStart, `${o.name} is inside the window`);
        assert.notEqual(o.kind, 'unknown');
        for (const s of required) assert.ok(!(o.timeline === s.timeline && o.segno !== undefined && o.segno >= s.startSegno && o.segno <= s.stopSegno), `${o.name} belongs to kept snapshot ${s.id}`);
      }
      assert.equal(p.keep.count + p.remove.length, c.input.objects.length);
      if (!c.blocked) assertStillVerifies(c.input, p);
    });
  }

  it('deletes oldest segments first and history files last', () => {
    const c = cases.find((x) => x.name.startsWith('a branch abandoned before'))!;
    const p = plan(c.input);
    const segnos = p.remove.filter((o) => o.segno !== undefined).map((o) => o.segno!);
    assert.deepEqual(segnos, [...segnos].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    assert.equal(p.remove.at(-1)!.kind, 'history');
  });

  it('says why a protected snapshot is kept', () => {
    const p = plan({ snapshots: daily(1, 0, 9, (k) => k >= 5), objects: oneTimeline, histories: new Map(), keepWithin: W7 });
    assert.match(p.protect[0].reason, /^PITR base: WAL window 7d starts 2026-02-22T00:00:00.000Z$/);
  });
});

describe('summariseWal', () => {
  it('gives first..last, count and bytes per timeline', () => {
    const list = [...segs(2, 150, 152), seg(1, 3), seg(1, 4), hist(2, 0), seg(1, 150, 0, '.partial')];
    assert.deepEqual(summariseWal(list), [
      { timeline: 1, first: segmentName(1, 3n, SEG), last: `${segmentName(1, 150n, SEG)}.partial`, count: 3, bytes: 1003 + 1004 + 1150 },
      { timeline: 2, first: segmentName(2, 150n, SEG), last: '00000002.history', count: 4, bytes: 1150 + 1151 + 1152 + 60 },
    ]);
    assert.equal(formatLsn(switchAt(150)), '0/96001000');
  });
});
