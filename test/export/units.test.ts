/** Pure parts of exports: connection strings and the lifecycle decision. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planLifecycle, RUNBOOK_LIFECYCLE } from '../../src/export/lifecycle.ts';
import { conninfoEnv, parseConninfo, quoteConninfoValue } from '../../src/postgres/conninfo.ts';
import { UsageError } from '../../src/util/errors.ts';
import { DAY_MS } from '../../src/util/clock.ts';

describe('parseConninfo, as pg export restore --into reads it (a bare database name too)', () => {
  const cases: [string, Record<string, string>][] = [
    ['app', { dbname: 'app' }],
    ['postgresql://postgres@/restored?host=%2Ftmp%2Fsock&port=5433', { user: 'postgres', dbname: 'restored', host: '/tmp/sock', port: '5433' }],
    ['postgres://u:p%40ss@db.example:6432/my%20db?sslmode=require', { user: 'u', password: 'p@ss', host: 'db.example', port: '6432', dbname: 'my db', sslmode: 'require' }],
    ['postgresql://[::1]:5432/x', { host: '::1', port: '5432', dbname: 'x' }],
    ['postgresql://h1:1,h2:2/x', { host: 'h1,h2', port: '1,2', dbname: 'x' }],
    ['postgresql://', {}],
    ["host=/tmp port=5432 dbname='my db' user=me password='it\\'s'", { host: '/tmp', port: '5432', dbname: 'my db', user: 'me', password: "it's" }],
    ['host = localhost  database=app', { host: 'localhost', dbname: 'app' }],
  ];
  for (const [input, want] of cases) it(JSON.stringify(input), () => assert.deepEqual(parseConninfo(input, { bareDbname: true }), want));

  it('refuses what it does not understand, as a usage error', () => {
    for (const bad of ['', 'host=x bogus=1', "dbname='open", 'postgresql://h/x?nope=1', 'host=x y', 'postgresql://h/%zz']) {
      assert.throws(() => parseConninfo(bad, { bareDbname: true }), UsageError, bad);
    }
  });

  it('turns parameters into libpq variables over the base environment', () => {
    const env = conninfoEnv({ dbname: 'restored', password: 'secret' }, { PGHOST: '/sock', PGDATABASE: 'app', PATH: '/bin' });
    assert.equal(env.PGHOST, '/sock');
    assert.equal(env.PGDATABASE, 'restored');
    assert.equal(env.PGPASSWORD, 'secret');
    assert.equal(env.PATH, '/bin');
  });

  it('quotes a value so any database name stays a name', () => {
    assert.equal(quoteConninfoValue("a b'c\\"), "'a b\\'c\\\\'");
    assert.deepEqual(parseConninfo(`dbname=${quoteConninfoValue("x' host=evil")}`, { bareDbname: true }), { dbname: "x' host=evil" });
  });
});

describe('planLifecycle', () => {
  const now = Date.UTC(2028, 0, 1);
  const at = (days: number) => new Date(now - days * DAY_MS).toISOString();
  it('moves hot exports after 90 days and deletes any after 730', () => {
    const got = planLifecycle(
      [
        { id: 'a', time: at(1), tier: 'hot' },
        { id: 'b', time: at(89.9), tier: 'hot' },
        { id: 'c', time: at(90), tier: 'hot' },
        { id: 'd', time: at(91), tier: 'cold' },
        { id: 'e', time: at(729.9), tier: 'cold' },
        { id: 'f', time: at(730), tier: 'cold' },
        { id: 'g', time: at(800), tier: 'hot' },
        { id: 'h', time: at(-1), tier: 'hot' },
      ],
      now,
      RUNBOOK_LIFECYCLE,
    );
    assert.deepEqual(
      got.map((d) => [d.id, d.action, d.ageDays]),
      [
        ['a', 'keep', 1],
        ['b', 'keep', 89],
        ['c', 'move', 90],
        ['d', 'keep', 91],
        ['e', 'keep', 729],
        ['f', 'delete', 730],
        ['g', 'delete', 800],
        ['h', 'keep', -1],
      ],
    );
    assert.match(got[2].reason, /older than 90 days/);
    assert.match(got[5].reason, /older than 730 days/);
  });
});
