/** Secrets retention (src/secrets/retention.ts): which versions go, as a table. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planSecretsExpiry } from '../../src/secrets/retention.ts';
import { DAY_MS } from '../../src/util/clock.ts';

const t0 = Date.UTC(2026, 0, 1);
const v = (id: string, day: number) => ({ id, time: new Date(t0 + day * DAY_MS).toISOString() });

describe('planSecretsExpiry', () => {
  const cases: { name: string; versions: ReturnType<typeof v>[]; keepDays: number; nowDay: number; remove: string[] }[] = [
    { name: 'nothing stored', versions: [], keepDays: 90, nowDay: 0, remove: [] },
    { name: 'all young', versions: [v('a', 0), v('b', 10)], keepDays: 90, nowDay: 50, remove: [] },
    { name: 'exactly keepDays old stays', versions: [v('a', 0), v('b', 10)], keepDays: 90, nowDay: 90, remove: [] },
    { name: 'older than keepDays goes', versions: [v('a', 0), v('b', 10), v('c', 20)], keepDays: 90, nowDay: 105, remove: ['a', 'b'] },
    { name: 'the newest stays whatever its age', versions: [v('a', 0), v('b', 10), v('c', 20)], keepDays: 90, nowDay: 500, remove: ['a', 'b'] },
    { name: 'a single old version stays', versions: [v('a', 0)], keepDays: 90, nowDay: 500, remove: [] },
    { name: 'unsorted input, short keep', versions: [v('c', 20), v('a', 0), v('b', 10)], keepDays: 7, nowDay: 25, remove: ['a', 'b'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const p = planSecretsExpiry(c.versions, c.keepDays, t0 + c.nowDay * DAY_MS);
      assert.deepEqual(
        p.remove.map((r) => r.id),
        c.remove,
      );
      assert.equal(p.keep.length + p.remove.length, c.versions.length);
      if (c.versions.length) assert.match(p.keep.at(-1)!.reason, /newest/);
    });
  }
});
