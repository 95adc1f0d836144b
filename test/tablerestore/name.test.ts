/** Pure parts of table restore: parsing SCHEMA.TABLE, the side table's name, and when a plan is refused. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clientConfigFromEnv, conninfoEnv, parseConninfo, redact } from '../../src/postgres/conninfo.ts';
import { displayName, parseTableName } from '../../src/tablerestore/name.ts';
import { refusal, restoredTableName, type TablePlan } from '../../src/tablerestore/plan.ts';
import { UsageError } from '../../src/util/errors.ts';

describe('parseTableName', () => {
  const ok: [string, string, string][] = [
    ['users', 'public', 'users'],
    ['public.users', 'public', 'users'],
    ['Public.Users', 'public', 'users'],
    ['"My Schema"."My Table"', 'My Schema', 'My Table'],
    ['app."Users"', 'app', 'Users'],
    ['"a""b".c', 'a"b', 'c'],
    ['"x.y"', 'public', 'x.y'],
    ['"users;drop table x"', 'public', 'users;drop table x'],
    ['_t$1', 'public', '_t$1'],
  ];
  for (const [text, schema, table] of ok) {
    it(`accepts ${text}`, () => assert.deepEqual(parseTableName(text), { schema, table }));
  }
  const bad = ['', 'users;drop table x', 'public.users; DROP TABLE x', 'a.b.c', '"users', '""', 'public.', '.users', '1users', 'us ers', 'users--', "users'", 'public.users/*', '"a"b', 'x'.repeat(64)];
  for (const text of bad) {
    it(`refuses ${JSON.stringify(text.slice(0, 30))}`, () => {
      assert.throws(() => parseTableName(text), (e: unknown) => e instanceof UsageError && /is not a table name/.test(e.message));
    });
  }
  it('displays names quoted only where needed', () => {
    assert.equal(displayName({ schema: 'public', table: 'users' }), 'public.users');
    assert.equal(displayName({ schema: 'My Schema', table: 'a"b' }), '"My Schema"."a""b"');
  });
});

describe('restoredTableName', () => {
  it('appends the UTC time', () => assert.equal(restoredTableName('users', Date.UTC(2026, 10, 24, 3, 4, 5)), 'users_restored_20261124030405'));
  it('shortens long names to 63 bytes', () => {
    const n = restoredTableName('t'.repeat(60), 0);
    assert.equal(Buffer.byteLength(n), 63);
    assert.ok(n.endsWith('_restored_19700101000000'));
  });
});

describe('refusal', () => {
  const plan = (p: Partial<TablePlan>): TablePlan => ({ table: 'public.users', mode: 'replace', restoredRows: 10, insert: 0, update: 0, delete: 0, unchanged: 10, dependents: [], missingParents: [], ...p });
  const dep = { table: 'public.applications', constraint: 'applications_user_id_fkey', via: 'public.users', action: 'delete' as const, rows: 7, depth: 1 };
  it('lets a replace that only inserts through without --yes', () => assert.equal(refusal(plan({ insert: 3 }), new Set(), false), undefined));
  it('asks for --yes when a replace deletes or updates (exit 2)', () => {
    const e = refusal(plan({ delete: 2 }), new Set(), false);
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /add --yes/);
    assert.equal(refusal(plan({ delete: 2 }), new Set(), true), undefined);
  });
  it('refuses dependent rows not included, naming table, count and action (exit 1)', () => {
    const e = refusal(plan({ delete: 2, dependents: [dep] }), new Set(), true);
    assert.equal(e?.exitCode, 1);
    assert.match(e!.message, /7 row\(s\) of public\.applications would be deleted \(ON DELETE CASCADE\) via applications_user_id_fkey/);
    assert.match(e!.hint!, /--include-dependents public\.applications/);
  });
  it('lets included dependents through (named, or --cascade)', () => {
    assert.equal(refusal(plan({ delete: 2, dependents: [dep] }), new Set(['public.applications']), true), undefined);
    assert.equal(refusal(plan({ delete: 2, dependents: [dep] }), 'all', true), undefined);
    assert.ok(refusal(plan({ delete: 2, dependents: [dep, { ...dep, table: 'public.notes', action: 'block' }] }), new Set(['public.applications']), true));
  });
  it('refuses rows whose parents are missing, saying which table to restore first', () => {
    const e = refusal(plan({ mode: 'merge', insert: 5, missingParents: [{ constraint: 'applications_user_id_fkey', table: 'public.users', rows: 5 }] }), new Set(), false);
    assert.match(e!.message, /5 row\(s\) reference public\.users rows that do not exist/);
    assert.match(e!.hint!, /restore public\.users first/);
  });
});

describe('--into CONNINFO', () => {
  const parse = (s: string) => parseConninfo(s, { nodePostgres: true });
  it('reads keyword/value pairs with quoted values', () => {
    assert.deepEqual(parse("host=/run/postgresql port=5433 dbname='my db' user=app password='it\\'s'"), { host: '/run/postgresql', port: '5433', dbname: 'my db', user: 'app', password: "it's" });
  });
  it('maps them to node-postgres settings, the rest from the environment', () => {
    const cfg = clientConfigFromEnv(conninfoEnv(parse("hostaddr=127.0.0.1 port=5433 dbname='my db' sslmode=verify-full connect_timeout=5 application_name=ferry"), { PGUSER: 'app', PGHOST: 'db' }));
    assert.deepEqual(cfg, { host: '127.0.0.1', port: 5433, user: 'app', password: undefined, database: 'my db', application_name: 'ferry', connectionTimeoutMillis: 5000, ssl: { rejectUnauthorized: true } });
  });
  it('refuses unknown keywords and broken syntax', () => {
    assert.throws(() => parse('host=x options=-csearch_path=evil'), /unsupported connection keyword "options"/);
    assert.throws(() => parse('postgresql://h/x?options=-cfoo'), /unsupported connection keyword "options"/);
    assert.throws(() => parse('postgresql://h1,h2/x'), /several hosts/);
    assert.throws(() => parse('host=x bogus=1'), /unknown connection keyword "bogus"/);
    assert.throws(() => parse("dbname='open"), /not closed/);
    assert.throws(() => parse('dbname'), /has no value/);
    assert.throws(() => parse(''), /is empty/);
  });
  it('never shows a password', () => {
    assert.equal(redact('postgresql://app:s3cret@db/x'), 'postgresql://app:***@db/x');
    assert.equal(redact("host=db password='a b' dbname=x"), 'host=db password=*** dbname=x');
    assert.equal(redact('host=db password=s3cret'), 'host=db password=***');
  });
});
