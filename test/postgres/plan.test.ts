/** Which snapshot serves a recovery target, and which targets are refused: table tests. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseSnapshot, parseTargetTime, pgTargetTime, type Candidate } from '../../src/postgres/plan.ts';
import type { PgSnapshotMeta } from '../../src/postgres/meta.ts';
import { ConfigError } from '../../src/util/errors.ts';

function snap(id: string, stopTime: string, stopLsn: string): Candidate {
  return { id, meta: { stopTime, stopLsn, timeline: 1 } as PgSnapshotMeta };
}

const snaps = [snap('a', '2026-11-01T03:10:00Z', '0/3000000'), snap('b', '2026-11-02T03:10:00Z', '0/9000000'), snap('c', '2026-11-03T03:10:00Z', '0/F000000')];
const now = Date.parse('2026-11-03T12:00:00Z');
const archive = { lastArchivedAt: Date.parse('2026-11-03T11:59:30Z') };
const time = (t: string) => ({ kind: 'time' as const, time: Date.parse(t), text: t });

describe('chooseSnapshot', () => {
  const cases: [string, Parameters<typeof chooseSnapshot>[1], string | RegExp][] = [
    ['latest takes the newest', { kind: 'latest' }, 'c'],
    ['a time between b and c takes b', time('2026-11-02T18:00:00Z'), 'b'],
    ['a time exactly at a snapshot’s consistent point takes it', time('2026-11-02T03:10:00Z'), 'b'],
    ['a time after c takes c', time('2026-11-03T11:00:00Z'), 'c'],
    ['an LSN between a and b takes a', { kind: 'lsn', lsn: '0/5000000' }, 'a'],
    ['an xid cannot be placed: newest', { kind: 'xid', xid: '1234' }, 'c'],
    ['a time before the oldest snapshot is refused', time('2026-10-31T00:00:00Z'), /before the oldest snapshot/],
    ['a time in the future is refused', time('2026-11-04T00:00:00Z'), /in the future/],
    ['a time past the last archived WAL is refused', time('2026-11-03T11:59:50Z'), /past the last archived WAL/],
    ['an LSN before the oldest snapshot is refused', { kind: 'lsn', lsn: '0/1000000' }, /before the oldest snapshot/],
  ];
  for (const [name, target, want] of cases) {
    it(name, () => {
      if (typeof want === 'string') assert.equal(chooseSnapshot(snaps, target, now, archive).id, want);
      else assert.throws(() => chooseSnapshot(snaps, target, now, archive), (e: Error) => e instanceof ConfigError && want.test(e.message));
    });
  }

  it('an explicit snapshot must be consistent before the target', () => {
    assert.equal(chooseSnapshot(snaps, time('2026-11-02T18:00:00Z'), now, archive, 'a').id, 'a');
    assert.throws(() => chooseSnapshot(snaps, time('2026-11-02T18:00:00Z'), now, archive, 'c'), /after the recovery target/);
  });

  it('no snapshots: a clear error', () => {
    assert.throws(() => chooseSnapshot([], { kind: 'latest' }, now, archive), /no PostgreSQL snapshot/);
  });
});

describe('parseTargetTime', () => {
  it('accepts ISO 8601 and pgBackRest-style times with a zone', () => {
    assert.equal(parseTargetTime('2026-11-24T03:15:00Z'), Date.parse('2026-11-24T03:15:00Z'));
    assert.equal(parseTargetTime('2026-11-24 03:15:00+00'), Date.parse('2026-11-24T03:15:00Z'));
    assert.equal(parseTargetTime('2026-11-24 05:15:00.250+02:00'), Date.parse('2026-11-24T03:15:00.250Z'));
  });
  it('hands PostgreSQL a form it accepts (no T, no Z), keeping microseconds', () => {
    assert.equal(pgTargetTime('2026-11-24T03:15:00.123456Z'), '2026-11-24 03:15:00.123456+00');
    assert.equal(pgTargetTime('2026-11-24 03:15:00+02'), '2026-11-24 03:15:00+02');
  });
  it('refuses times without a zone and non-times', () => {
    assert.throws(() => parseTargetTime('2026-11-24 03:15:00'), /no time zone/);
    assert.throws(() => parseTargetTime('yesterday'), /not a time/);
  });
});
