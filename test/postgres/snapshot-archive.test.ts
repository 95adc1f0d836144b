/**
 * A snapshot is listed only once the WAL that makes it consistent is in the repository
 * (issue 3): with archive_command failing, `pg snapshot` fails and lists nothing; once
 * archiving works again, the next one completes.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { ferry, ferryOk, FERRY } from '../harness/cli.ts';
import { archivedCluster, type ArchivedCluster } from '../harness/archive.ts';

let a: ArchivedCluster;
before(async () => {
  a = await archivedCluster({ conf: ["archive_command = 'false'"] });
});
after(async () => {
  await a?.destroy();
});

it('fails while archive_command fails, and lists no snapshot; succeeds once it works', async () => {
  const failed = await ferry(['pg', 'snapshot', '--no-fingerprint'], { env: a.env });
  assert.equal(failed.code, 1, failed.stderr);
  assert.match(failed.stderr, /archive_command is failing \(segment [0-9A-F]{24}, \d+ failures while this snapshot waited\)/);
  assert.deepEqual(JSON.parse((await ferryOk(['pg', 'snapshots', '--json'], { env: a.env })).stdout), []);

  // Fixed, but slow to deliver its first segment: the next snapshot starts waiting while the
  // archiver's counters still show only the earlier failures, which must not fail it.
  await a.cluster.query(`ALTER SYSTEM SET archive_command = 'sleep 1 && FERRY_REPO=${a.repo} FERRY_KEY_FILE=${a.keyFile} ${FERRY} wal push %p'`);
  await a.cluster.query('SELECT pg_reload_conf()');
  const [stale] = await a.cluster.query<{ failed: string | null; ok: string | null }>('SELECT last_failed_wal AS failed, last_archived_wal AS ok FROM pg_stat_archiver');
  assert.ok(stale.failed !== null && stale.ok === null, `the archiver still shows only failures: ${JSON.stringify(stale)}`);
  const ok = JSON.parse((await ferryOk(['pg', 'snapshot', '--no-fingerprint', '--json'], { env: a.env })).stdout);
  const listed = JSON.parse((await ferryOk(['pg', 'snapshots', '--json'], { env: a.env })).stdout) as { id: string }[];
  assert.deepEqual(
    listed.map((s) => s.id),
    [ok.id],
  );
  // The WAL that makes it consistent is there.
  const wal = await ferryOk(['wal', 'list', '--json'], { env: a.env });
  assert.ok((JSON.parse(wal.stdout) as { name: string }[]).some((w) => w.name === ok.meta.stopWal), `${ok.meta.stopWal} archived`);
});
