/**
 * Snapshot retention (src/repo/retention.ts): golden files for whole policies and
 * tables for the rules one at a time.
 *
 * Golden files: test/golden/retention/<case>.json hold { description, now, policy
 * (ferry.yaml `policy.retention` form), snapshots, expected }. After an intended
 * change of behaviour, regenerate with UPDATE_GOLDEN=1 and review the diff.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  applyPolicy,
  formatDuration,
  isoWeek,
  parseCount,
  parseDuration,
  parseRetentionDoc,
  type RetentionPolicy,
  type RetentionResult,
  type RetentionSnapshot,
} from '../../src/repo/retention.ts';
import { ConfigError } from '../../src/util/errors.ts';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'retention');
const DAY = 86_400_000;

interface GoldenCase {
  description: string;
  now: string;
  policy: Record<string, unknown>;
  snapshots: RetentionSnapshot[];
  expected: { keep: { id: string; reasons: string[] }[]; remove: { id: string; reason: string }[] } | null;
}

/** The golden form of a result: ids and reasons, in the function's order. */
function golden(r: RetentionResult): NonNullable<GoldenCase['expected']> {
  return { keep: r.keep.map((k) => ({ id: k.id, reasons: k.reasons })), remove: r.remove.map((x) => ({ id: x.id, reason: x.reason })) };
}

/** JSON with one array element per line, so diffs of golden files read like tables. */
function formatGolden(c: GoldenCase): string {
  const list = (items: unknown[], pad: string) => (items.length ? `[\n${items.map((i) => `${pad}  ${JSON.stringify(i)}`).join(',\n')}\n${pad}]` : '[]');
  const exp = c.expected ? `{\n    "keep": ${list(c.expected.keep, '    ')},\n    "remove": ${list(c.expected.remove, '    ')}\n  }` : 'null';
  return `{\n  "description": ${JSON.stringify(c.description)},\n  "now": ${JSON.stringify(c.now)},\n  "policy": ${JSON.stringify(c.policy)},\n  "snapshots": ${list(c.snapshots, '  ')},\n  "expected": ${exp}\n}\n`;
}

describe('retention golden files', () => {
  const files = readdirSync(GOLDEN).filter((f) => f.endsWith('.json')).sort();
  it('has cases', () => assert.ok(files.length >= 5));
  for (const f of files) {
    it(f.replace(/\.json$/, ''), () => {
      const path = join(GOLDEN, f);
      const c = JSON.parse(readFileSync(path, 'utf8')) as GoldenCase;
      const policy = parseRetentionDoc(c.policy, f);
      const got = golden(applyPolicy(c.snapshots, policy, Date.parse(c.now)));
      if (process.env.UPDATE_GOLDEN) {
        writeFileSync(path, formatGolden({ ...c, expected: got }));
        return;
      }
      assert.ok(c.expected, `${f} has no expected result; run with UPDATE_GOLDEN=1 and review it`);
      assert.deepEqual(got, c.expected);
      // Invariants every case must hold.
      const ids = c.snapshots.map((s) => s.id).sort();
      assert.deepEqual([...got.keep.map((k) => k.id), ...got.remove.map((r) => r.id)].sort(), ids, 'every snapshot decided exactly once');
      const groups = new Map<string, RetentionSnapshot>();
      for (const s of c.snapshots) {
        const g = `${s.kind}\0${s.asset}`;
        if (!groups.has(g) || Date.parse(s.time) > Date.parse(groups.get(g)!.time)) groups.set(g, s);
      }
      for (const newest of groups.values()) assert.ok(got.keep.some((k) => k.id === newest.id), `newest ${newest.id} of its group kept`);
      for (const k of got.keep) assert.ok(k.reasons.length > 0);
      // Input order must not matter.
      const shuffled = [...c.snapshots].reverse();
      assert.deepEqual(golden(applyPolicy(shuffled, policy, Date.parse(c.now))), got);
    });
  }
});

const NOW = Date.UTC(2026, 2, 1, 12, 0);
function snaps(...specs: [id: string, daysAgo: number, labels?: string[]][]): RetentionSnapshot[] {
  return specs.map(([id, d, labels]) => ({ id, kind: 'postgres', asset: 'main', time: new Date(NOW - d * DAY).toISOString(), ...(labels ? { labels } : {}) }));
}
function decide(list: RetentionSnapshot[], policy: RetentionPolicy, now = NOW) {
  const r = applyPolicy(list, policy, now);
  return { keep: r.keep.map((k) => k.id).sort(), remove: r.remove.map((k) => k.id).sort() };
}

describe('applyPolicy rules', () => {
  const table: { name: string; list: RetentionSnapshot[]; policy: RetentionPolicy; keep: string[] }[] = [
    { name: 'keep-last 2', list: snaps(['a', 5], ['b', 4], ['c', 3], ['d', 2]), policy: { keepLast: 2 }, keep: ['c', 'd'] },
    { name: 'keep-last all', list: snaps(['a', 5], ['b', 4]), policy: { keepLast: -1 }, keep: ['a', 'b'] },
    { name: 'keep-within includes the boundary', list: snaps(['a', 10.0001], ['b', 10], ['c', 1]), policy: { keepWithin: 10 * DAY }, keep: ['b', 'c'] },
    { name: 'keep-within keeps future snapshots (clock skew)', list: snaps(['a', 40], ['b', -1]), policy: { keepWithin: DAY }, keep: ['b'] },
    { name: 'newest of a group survives any policy', list: snaps(['a', 50], ['b', 40]), policy: { keepWithin: DAY }, keep: ['b'] },
    { name: 'labels protect when listed', list: snaps(['a', 50, ['x']], ['b', 45, ['y']], ['c', 1]), policy: { keepWithin: DAY, keepLabels: ['x'] }, keep: ['a', 'c'] },
    { name: 'labels alone remove nothing', list: snaps(['a', 50], ['b', 45, ['x']], ['c', 1]), policy: { keepLabels: ['x'] }, keep: ['a', 'b', 'c'] },
    { name: 'empty policy removes nothing', list: snaps(['a', 50], ['b', 1]), policy: {}, keep: ['a', 'b'] },
    { name: 'count 0 is no rule', list: snaps(['a', 50], ['b', 1]), policy: { keepDaily: 0 }, keep: ['a', 'b'] },
    {
      name: 'keep-daily keeps the newest of each day',
      list: [
        ...snaps(['d1-early', 1.4], ['d1-late', 1.1], ['d2-early', 2.4], ['d2-late', 2.1], ['d3', 3.2]),
        // same day as d3 and the oldest: kept because daily still has counts left
        ...snaps(['d3-oldest', 3.3]),
      ],
      policy: { keepDaily: 5 },
      keep: ['d1-late', 'd2-late', 'd3', 'd3-oldest'],
    },
    {
      name: 'keep-daily with counts used up keeps no oldest',
      list: snaps(['a', 1.1], ['b', 2.1], ['c', 3.1], ['d', 3.2]),
      policy: { keepDaily: 2 },
      keep: ['a', 'b'],
    },
  ];
  for (const t of table) {
    it(t.name, () => assert.deepEqual(decide(t.list, t.policy).keep, [...t.keep].sort()));
  }

  it('keeps a snapshot whose time cannot be read, and says so', () => {
    const list: RetentionSnapshot[] = [...snaps(['a', 40], ['b', 1]), { id: 'bad', kind: 'postgres', asset: 'main', time: 'yesterday' }];
    const r = applyPolicy(list, { keepWithin: DAY * 2 }, NOW);
    assert.deepEqual(r.remove.map((x) => x.id), ['a']);
    assert.deepEqual(r.keep.find((k) => k.id === 'bad')!.reasons, ['time unreadable']);
    assert.match(r.remove[0].reason, /matches no keep rule \(keep-within 2d\)/);
  });

  it('groups by kind and asset and applies per-kind overrides field by field', () => {
    const list: RetentionSnapshot[] = [
      { id: 'pg-old', kind: 'postgres', asset: 'main', time: new Date(NOW - 60 * DAY).toISOString() },
      { id: 'pg-new', kind: 'postgres', asset: 'main', time: new Date(NOW - 1 * DAY).toISOString() },
      { id: 'other-old', kind: 'postgres', asset: 'other', time: new Date(NOW - 60 * DAY).toISOString() },
      { id: 'sec-old', kind: 'secrets', asset: 'app', time: new Date(NOW - 60 * DAY).toISOString() },
      { id: 'sec-new', kind: 'secrets', asset: 'app', time: new Date(NOW - 1 * DAY).toISOString() },
    ];
    const r = decide(list, { keepWithin: 30 * DAY, kinds: { secrets: { keepWithin: 90 * DAY } } });
    assert.deepEqual(r.remove, ['pg-old']);
  });

  it('returns groups in name order, newest first within a group, whatever the input order', () => {
    const a = snaps(['x', 3], ['y', 2], ['z', 1]);
    const r1 = applyPolicy(a, { keepLast: 1 }, NOW);
    const r2 = applyPolicy([...a].reverse(), { keepLast: 1 }, NOW);
    assert.deepEqual(r1, r2);
    assert.deepEqual(r1.remove.map((x) => x.id), ['y', 'x']);
  });
});

describe('calendar buckets', () => {
  const weeks: [string, string][] = [
    ['2026-01-01T00:00:00Z', '2026-W01'], // Thursday
    ['2025-12-29T00:00:00Z', '2026-W01'], // Monday of the week holding Jan 1 (a Thursday)
    ['2025-12-28T23:59:59Z', '2025-W52'], // Sunday before
    ['2021-01-03T12:00:00Z', '2020-W53'], // 2020 had 53 ISO weeks
    ['2021-01-04T00:00:00Z', '2021-W01'],
    ['2024-12-30T00:00:00Z', '2025-W01'],
    ['2027-01-01T00:00:00Z', '2026-W53'],
  ];
  for (const [t, w] of weeks) it(`ISO week of ${t} is ${w}`, () => assert.equal(isoWeek(Date.parse(t)), w));
});

describe('durations and policy documents', () => {
  const ok: [string, number][] = [
    ['30d', 30 * DAY],
    ['7d12h', 7.5 * DAY],
    ['2w', 14 * DAY],
    ['90min', 90 * 60_000],
    ['1y', 365 * DAY],
    ['1mo', 30 * DAY],
    ['45s', 45_000],
    ['0', 0],
  ];
  for (const [text, ms] of ok) it(`parses ${text}`, () => assert.equal(parseDuration(text), ms));
  for (const bad of ['', '30', '6m', 'd', '1.5d', '30 d', '-1d', '3dd', 'forever']) {
    it(`refuses "${bad}"`, () => assert.throws(() => parseDuration(bad), ConfigError));
  }
  it('formats durations', () => {
    assert.equal(formatDuration(30 * DAY), '30d');
    assert.equal(formatDuration(1.5 * DAY), '1d12h');
    assert.equal(formatDuration(90 * 60_000), '1h30min');
  });
  it('parses counts', () => {
    assert.equal(parseCount('7', 'x'), 7);
    assert.equal(parseCount(7, 'x'), 7);
    assert.equal(parseCount('all', 'x'), -1);
    for (const bad of ['-2', '1.5', 'many', -3, 2.5, true]) assert.throws(() => parseCount(bad, 'x'), ConfigError);
  });
  it('reads ferry.yaml policy.retention', () => {
    const p = parseRetentionDoc({ keep_within: '30d', keep_daily: 7, keep_labels: ['a'], wal_keep_within: '7d', kinds: { secrets: { keep_within: '90d' } } }, 'policy.retention', ['wal_keep_within']);
    assert.deepEqual(p, { keepWithin: 30 * DAY, keepDaily: 7, keepLabels: ['a'], kinds: { secrets: { keepWithin: 90 * DAY } } });
  });
  const badDocs: [string, unknown, RegExp][] = [
    ['a misspelt rule', { keep_withn: '30d' }, /unknown retention rule "keep_withn"/],
    ['a camelCase rule', { keepDaily: 3 }, /unknown retention rule "keepDaily"/],
    ['a bad duration', { keep_within: '30' }, /keep_within "30" is not a duration/],
    ['a bad count', { keep_last: 'three' }, /keep_last must be a whole number/],
    ['labels not a list', { keep_labels: 'a' }, /keep_labels must be a list/],
    ['not a map', '30d', /must be a map/],
    ['wal rule under a kind', { kinds: { postgres: { wal_keep_within: '7d' } } }, /unknown retention rule "wal_keep_within"/],
  ];
  for (const [name, doc, re] of badDocs) {
    it(`refuses ${name}`, () => assert.throws(() => parseRetentionDoc(doc, 'policy.retention', ['wal_keep_within']), (e: Error) => e instanceof ConfigError && re.test(e.message)));
  }
});
