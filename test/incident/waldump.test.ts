/**
 * The pg_waldump parser and the incident rules on captured PostgreSQL 15 output.
 *
 * fixtures/pg15-replica.waldump (wal_level = replica; the long DELETE run trimmed
 * to 3 + 4 records), from:
 *   users(id pk) <- applications(user_id REFERENCES users ON DELETE CASCADE), other
 *   xid 730: DELETE FROM users                        (cascades to applications)
 *   xid 731: SAVEPOINT s; UPDATE other (50 rows); RELEASE s; SAVEPOINT t;
 *            DELETE FROM other WHERE id < 10; COMMIT  (subxacts 732, 733)
 *   xid 734: DELETE FROM other; ROLLBACK
 *   xid 735: TRUNCATE other                           (new files, old ones dropped)
 *   xid 736/737: CREATE TABLE gone; INSERT 10 rows
 *   xid 738: DROP TABLE gone
 * fixtures/pg15-logical-truncate.waldump (wal_level = logical):
 *   xid 754: TRUNCATE users CASCADE                   (Heap TRUNCATE relids 16384 16391)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chooseSegments, describeTx, propose, qualifyTable, selectIncidents, withFormerFiles, type Incident, type Names } from '../../src/incident/find.ts';
import type { RelName } from '../../src/incident/names.ts';
import { parseRecord, parseXactDesc, WalTracker } from '../../src/incident/waldump.ts';
import type { WalObject } from '../../src/postgres/wal.ts';
import { formatLsn } from '../../src/postgres/walname.ts';

const dir = join(import.meta.dirname, 'fixtures');

function track(file: string): WalTracker {
  const t = new WalTracker();
  for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) t.feedLine(line);
  return t;
}

const table = (schema: string, name: string, kind = 'r'): RelName => ({ schema, name, kind });

/** What the live database answered after the replica capture (users 16384, applications 16391, other now in 16410). */
const names: Names = {
  files: new Map([
    ['1663/5/16384', table('public', 'users')],
    ['1663/5/16391', table('public', 'applications')],
    ['1663/5/16410', table('public', 'other')],
    ['1663/5/16411', table('pg_toast', 'pg_toast_16400', 't')],
    ['1663/5/1259', table('pg_catalog', 'pg_class')],
  ]),
  oids: new Map([
    ['5/16384', table('public', 'users')],
    ['5/16391', table('public', 'applications')],
    ['5/16403', table('public', 'other')],
    ['5/16406', table('pg_toast', 'pg_toast_16403', 't')],
    ['5/16407', table('pg_toast', 'pg_toast_16403_index', 'i')],
    ['5/16408', table('public', 'other_pkey', 'i')],
  ]),
};

describe('pg_waldump lines', () => {
  it('parses a heap record with its block reference', () => {
    const r = parseRecord(
      'rmgr: Heap        len (rec/tot):     54/    54, tx:        730, lsn: 0/0155DF30, prev 0/0155DF08, desc: DELETE off 1 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/5/16384 blk 0',
    );
    assert.ok(r);
    assert.equal(r.rmgr, 'Heap');
    assert.equal(r.xid, 730);
    assert.equal(formatLsn(r.lsn), '0/155DF30');
    assert.deepEqual(r.blocks, [{ id: 0, spc: 1663, db: 5, node: 16384, blk: 0 }]);
  });

  it('leaves out block references to other forks, and lines that are not records', () => {
    const r = parseRecord('rmgr: Heap2       len (rec/tot):     59/  8199, tx:          0, lsn: 0/01A0C1F8, prev 0/01A0C1B8, desc: VISIBLE cutoff xid 740 flags 0x01, blkref #0: rel 1663/5/16384 fork vm blk 0 FPW, blkref #1: rel 1663/5/16384 blk 3');
    assert.deepEqual(r?.blocks.map((b) => b.blk), [3]);
    assert.equal(parseRecord('first record is after 0/155DF31, at 0/155DF68, skipping over 55 bytes'), undefined);
    assert.equal(parseRecord('pg_waldump: error: error in WAL record at 0/15AEE38: invalid record length'), undefined);
  });

  it('parses commit and abort descriptions', () => {
    assert.deepEqual(parseXactDesc('COMMIT 2026-11-24 12:03:49.592250 UTC; subxacts: 732 733'), {
      kind: 'commit',
      time: '2026-11-24T12:03:49.592250Z',
      subxacts: [732, 733],
      rels: [],
    });
    const d = parseXactDesc('COMMIT 2026-11-24 12:03:49.595479 UTC; rels: base/5/16414 pg_tblspc/16385/PG_15_202209061/5/16500 global/1262; dropped stats: 2/5/16414; inval msgs: catcache 80');
    assert.deepEqual(d?.rels, [
      { spc: 1663, db: 5, node: 16414 },
      { spc: 16385, db: 5, node: 16500 },
      { spc: 1664, db: 0, node: 1262 },
    ]);
    assert.equal(parseXactDesc('ABORT 2026-11-24 12:03:49.592655 UTC')?.kind, 'abort');
    assert.equal(parseXactDesc('COMMIT_PREPARED 812: 2026-11-24 12:03:49.592655 UTC')?.preparedXid, 812);
    assert.equal(parseXactDesc('COMMIT 2026-11-24 13:03:49.592655 CET'), undefined, 'times are read in UTC only');
  });
});

describe('committed transactions from a replica-level capture', () => {
  const t = track('pg15-replica.waldump');
  const byXid = new Map(t.committed.map((c) => [c.xid, c]));
  const named = withFormerFiles(t.committed, names);
  const describe1 = (xid: number) => describeTx(byXid.get(xid)!, named, t);

  it('counts the DELETE and its cascade per table, with the commit record LSN and time', () => {
    const c = byXid.get(730)!;
    assert.equal(formatLsn(c.lsn), '0/156BA98');
    assert.equal(c.commitTime, '2026-11-24T12:03:49.591350Z');
    assert.deepEqual(describe1(730), [
      { name: 'public.applications', op: 'delete', rows: 4 },
      { name: 'public.users', op: 'delete', rows: 3 },
    ]);
  });

  it('rolls the rows of subtransactions into the top-level transaction (named through the later TRUNCATE)', () => {
    assert.equal(byXid.has(732), false);
    assert.deepEqual(byXid.get(731)!.subxacts, [732, 733]);
    assert.deepEqual(describe1(731), [
      { name: 'public.other', op: 'update', rows: 50 },
      { name: 'public.other', op: 'delete', rows: 9 },
    ]);
  });

  it('leaves out aborted transactions', () => {
    assert.equal(byXid.has(734), false);
  });

  it('sees a TRUNCATE as new empty files and names the table by the OID it locked', () => {
    assert.deepEqual(describe1(735), [{ name: 'public.other', op: 'truncate', rows: null }]);
  });

  it('sees a DROP TABLE, names the dropped file it cannot resolve, and counts the rows it held', () => {
    assert.deepEqual(describe1(738), [{ name: 'rel 1663/5/16414', op: 'drop', rows: 10 }], 'created within the capture: its rows are known');
    assert.deepEqual(describe1(736), [], 'CREATE TABLE touches only catalogs');
    assert.deepEqual(describe1(737), [], 'inserts are not incidents');
  });

  it('filters by table, operation, threshold and time, and proposes the worst', () => {
    const all = t.committed.map((c) => ({ xid: c.xid, lsn: formatLsn(c.lsn), commitTime: c.commitTime, commitMs: c.commitMs, timeline: 1, subxacts: c.subxacts, tables: describeTx(c, named, t) }));
    const xids = (l: Incident[]) => l.map((i) => i.xid);
    assert.deepEqual(xids(selectIncidents(all, { minRows: 3 })), [730, 731, 735, 738]);
    assert.deepEqual(xids(selectIncidents(all, { minRows: 100 })), [735], 'a TRUNCATE of unknown size passes any threshold; the DROP of 10 rows does not');
    assert.deepEqual(xids(selectIncidents(all, { minRows: 3, table: 'public.users' })), [730]);
    assert.deepEqual(xids(selectIncidents(all, { minRows: 3, table: 'public.other', op: 'update' })), [731]);
    assert.deepEqual(xids(selectIncidents(all, { minRows: 3, op: 'truncate' })), [735]);
    assert.deepEqual(xids(selectIncidents(all, { minRows: 3, since: Date.parse('2026-11-24T12:03:49.592Z') })), [731, 735, 738]);
    assert.deepEqual(xids(selectIncidents(all, { minRows: 3, until: Date.parse('2026-11-24T12:03:49.5915Z') })), [730]);
    const users = selectIncidents(all, { minRows: 3, table: 'public.users' });
    assert.equal(propose(users)?.command, 'ferry pg restore --target-dir DIR --before-xid 730 --start --port PORT');
    assert.equal(propose(selectIncidents(all, { minRows: 3 }))?.xid, 735, 'a TRUNCATE of unknown size outranks row counts');
  });

  it('names nothing without a live database, and keeps catalogs out', () => {
    const none: Names = { files: new Map(), oids: new Map() };
    assert.deepEqual(describeTx(byXid.get(730)!, none, t), [
      { name: 'rel 1663/5/16391', op: 'delete', rows: 4 },
      { name: 'rel 1663/5/16384', op: 'delete', rows: 3 },
    ]);
    assert.deepEqual(describeTx(byXid.get(735)!, none, t), [{ name: 'rel 1663/5/16410', op: 'truncate', rows: null }], 'the first new file is the heap');
  });
});

describe('committed transactions from a logical-level capture', () => {
  it('names the tables of a Heap TRUNCATE (CASCADE) by OID', () => {
    const t = track('pg15-logical-truncate.waldump');
    const c = t.committed.find((x) => x.xid === 754)!;
    assert.deepEqual(
      c.truncatedOids.map((o) => o.oid),
      [16384, 16391],
    );
    assert.deepEqual(describeTx(c, names, t), [
      { name: 'public.applications', op: 'truncate', rows: null },
      { name: 'public.users', op: 'truncate', rows: null },
    ]);
  });
});

describe('DDL that is not an incident, from a replica-level capture', () => {
  // big(id pk, payload text) with 200 rows and an index big_payload, then:
  // xid 758 DROP INDEX big_payload; 759 VACUUM FULL big; 760 DROP TABLE big.
  const t = track('pg15-ddl.waldump');
  const byXid = new Map(t.committed.map((c) => [c.xid, c]));
  const none: Names = { files: new Map(), oids: new Map() };
  /** As the live database would answer had big not been dropped at the end. */
  const live: Names = {
    files: new Map([
      ['1663/5/16437', table('public', 'big')],
      ['1663/5/16440', table('pg_toast', 'pg_toast_16429', 't')],
      ['1663/5/16441', table('pg_toast', 'pg_toast_16429_index', 'i')],
      ['1663/5/16442', table('public', 'big_pkey', 'i')],
    ]),
    oids: new Map([
      ['5/16429', table('public', 'big')],
      ['5/16432', table('pg_toast', 'pg_toast_16429', 't')],
      ['5/16433', table('pg_toast', 'pg_toast_16429_index', 'i')],
      ['5/16434', table('public', 'big_pkey', 'i')],
    ]),
  };

  it('does not report DROP INDEX or VACUUM FULL (its new heap file is filled)', () => {
    for (const names of [none, live]) {
      assert.deepEqual(describeTx(byXid.get(758)!, names, t), []);
      assert.deepEqual(describeTx(byXid.get(759)!, names, t), []);
    }
  });

  it('does not report VACUUM cutting empty pages off a table (Storage TRUNCATE with a transaction id)', () => {
    const v = new WalTracker();
    for (const line of [
      'rmgr: Standby     len (rec/tot):     42/    42, tx:        739, lsn: 0/01571F38, prev 0/01571E78, desc: LOCK xid 739 db 5 rel 16384 ',
      'rmgr: Storage     len (rec/tot):     46/    46, tx:        739, lsn: 0/01571F68, prev 0/01571F38, desc: TRUNCATE base/5/16384 to 0 blocks flags 7',
      'rmgr: Heap        len (rec/tot):    188/   188, tx:        739, lsn: 0/01571F98, prev 0/01571F68, desc: INPLACE off 12, blkref #0: rel 1663/5/1259 blk 0',
      'rmgr: Transaction len (rec/tot):    146/   146, tx:        739, lsn: 0/01572070, prev 0/01571F98, desc: COMMIT 2026-11-24 12:04:49.424630 UTC; inval msgs: catcache 55 catcache 54 relcache 16389 relcache 16384',
    ]) {
      v.feedLine(line);
    }
    assert.equal(v.committed.length, 1);
    assert.deepEqual(v.committed[0].smgrTruncated, [{ spc: 1663, db: 5, node: 16384 }]);
    assert.deepEqual(describeTx(v.committed[0], names, v), []);
  });

  it('reports one dropped table as its lowest-numbered file', () => {
    assert.deepEqual(describeTx(byXid.get(760)!, none, t), [{ name: 'rel 1663/5/16437', op: 'drop', rows: null }]);
  });
});

describe('options and WAL choice', () => {
  it('qualifies table names with public', () => {
    assert.equal(qualifyTable('users'), 'public.users');
    assert.equal(qualifyTable('app.users'), 'app.users');
    assert.throws(() => qualifyTable('a.b.c'), /SCHEMA.TABLE/);
  });

  it('reads the segments stored since the start (with slack), plus the one before', () => {
    const seg = (tl: number, n: number, mtime: number, kind: WalObject['kind'] = 'segment'): WalObject => {
      const name = `0000000${tl}000000000000000${n}${kind === 'partial' ? '.partial' : ''}`;
      return { name, key: `wal/0000000${tl}/${name}`, kind, timeline: tl, size: 1, mtime };
    };
    const objects = [seg(1, 1, 100), seg(1, 2, 200), seg(1, 3, 300), seg(1, 4, 400), seg(1, 5, 410, 'partial'), seg(2, 5, 500), seg(2, 6, 600, 'partial')];
    assert.deepEqual(
      chooseSegments(objects, 350, 10).map((o) => o.name),
      ['000000010000000000000003', '000000010000000000000004', '000000010000000000000005.partial', '000000020000000000000005', '000000020000000000000006.partial'],
    );
    assert.deepEqual(chooseSegments(objects, 10_000, 10), []);
  });
});
