/**
 * bin/ferry-wal-fetch, the shell restore_command of async mode, with a stand-in `ferry`
 * beside it that records how it was called: it must answer exactly the case
 * `wal fetch --async` answers from the prefetch spool (a file the running fetch worker of
 * this repository fetched), moving it whole into place and recording the name for the
 * worker, and hand every other case to `ferry wal fetch --async` with the arguments
 * unchanged. The recovery of a real cluster through it is in wal-async.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { defaultSpoolUnder, scriptWithStandIn, type ScriptWithStandIn } from '../harness/walscript.ts';
import { spoolLayout, FETCH_WORKER_MARKER, type Want } from '../../src/postgres/wal-async.ts';

const NAME = '00000001000000000000000A';

describe('ferry-wal-fetch, the script alone', () => {
  let tmp: TempDir;
  let script: ScriptWithStandIn;
  let pgWal: string;
  let dest: string;
  /** A live process whose command line names the fetch worker, as the real one's does. */
  let worker: ChildProcess;
  let otherProgram: ChildProcess;
  const repo = 's3://bucket/ferry prefix';
  const segment = Buffer.alloc(1 << 20, 5);

  before(async () => {
    tmp = makeTempDir('ferry-walfetch-sh-');
    script = scriptWithStandIn(tmp.path, 'ferry-wal-fetch');
    pgWal = join(tmp.path, 'data', 'pg_wal');
    mkdirSync(pgWal, { recursive: true });
    dest = join(pgWal, 'RECOVERYXLOG');
    worker = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)', FETCH_WORKER_MARKER], { stdio: 'ignore' });
    otherProgram = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 200));
  });
  after(() => {
    worker?.kill('SIGKILL');
    otherProgram?.kill('SIGKILL');
    tmp?.cleanup();
  });

  /** A spool as the fetch worker leaves it: its repository, its pid, and NAME prefetched. */
  function spoolWith(spool: string, o: { forRepo?: string; pid?: number; files?: string[] } = {}): string {
    const L = spoolLayout(spool);
    mkdirSync(L.fetched, { recursive: true });
    writeFileSync(L.fetchRepo, o.forRepo ?? repo);
    writeFileSync(L.fetchPid, `${o.pid ?? worker.pid}\n`);
    for (const n of o.files ?? [NAME]) writeFileSync(join(L.fetched, n), segment);
    return join(L.fetched, NAME);
  }

  it('moves a prefetched segment into place and records it for the worker, without starting ferry', () => {
    const spool = join(tmp.path, 'spool-a');
    const src = spoolWith(spool);
    rmSync(dest, { force: true });
    const r = script.run([NAME, dest], { FERRY_REPO: repo, FERRY_SPOOL: spool });
    assert.deepEqual(r, { code: 0, delegated: undefined });
    assert.ok(readFileSync(dest).equals(segment), 'the destination holds the segment');
    assert.ok(!existsSync(src), 'the spool no longer holds it');
    const want = JSON.parse(readFileSync(spoolLayout(spool).want, 'utf8')) as Want;
    assert.equal(want.name, NAME);
    assert.equal(want.segmentSize, segment.length);
    assert.equal(want.repo, repo);
    assert.ok(Math.abs(want.at - Date.now()) < 60_000, `a time in ms: ${want.at}`);
    assert.deepEqual(readdirSync(spoolLayout(spool).fetchDir).filter((n) => n.endsWith('.tmp')), [], 'no temp file left');
    // Used once: the same call again goes to ferry.
    assert.deepEqual(script.run([NAME, dest], { FERRY_REPO: repo, FERRY_SPOOL: spool }).delegated, ['wal', 'fetch', '--async', NAME, dest]);
  });

  it('replaces an existing destination, and copies then renames from another filesystem', (t) => {
    const spool = join(tmp.path, 'spool-b');
    spoolWith(spool);
    writeFileSync(dest, 'old');
    assert.equal(script.run([NAME, dest], { FERRY_REPO: repo, FERRY_SPOOL: spool }).code, 0);
    assert.ok(readFileSync(dest).equals(segment));
    if (!existsSync('/dev/shm') || statSync('/dev/shm').dev === statSync(tmp.path).dev) {
      t.skip('no second filesystem here');
      return;
    }
    const far = join('/dev/shm', `ferry-walfetch-${process.pid}`);
    const src = spoolWith(far);
    try {
      rmSync(dest, { force: true });
      assert.deepEqual(script.run([NAME, dest], { FERRY_REPO: repo, FERRY_SPOOL: far }), { code: 0, delegated: undefined });
      assert.ok(readFileSync(dest).equals(segment));
      assert.ok(!existsSync(src));
      assert.deepEqual(readdirSync(pgWal).filter((n) => n.startsWith('.')), [], 'no copy left beside the destination');
    } finally {
      rmSync(far, { recursive: true, force: true });
    }
  });

  it('finds the spool ferry picks by default, from a destination relative to the data directory', () => {
    const tmpdir = join(tmp.path, 'tmpdir');
    mkdirSync(tmpdir);
    const spool = defaultSpoolUnder(tmpdir, repo, pgWal);
    assert.ok(spool.startsWith(tmpdir + '/ferry-spool-'));
    spoolWith(spool);
    rmSync(dest, { force: true });
    const r = script.run([NAME, 'pg_wal/RECOVERYXLOG'], { FERRY_REPO: repo, TMPDIR: `${tmpdir}/` }, join(tmp.path, 'data'));
    assert.deepEqual(r, { code: 0, delegated: undefined });
    assert.ok(readFileSync(dest).equals(segment));
  });

  it('takes --repo and --spool (both spellings) over the environment, and skips the values of --ahead and --parallel', () => {
    const spool = join(tmp.path, 'spool-c');
    spoolWith(spool, { forRepo: 'file:///srv/other' });
    const r = script.run(['--ahead', '8', '--repo', 'file:///srv/other', `--spool=${spool}`, '--parallel', '2', NAME, dest], { FERRY_REPO: repo, FERRY_SPOOL: '/nowhere' });
    assert.deepEqual(r, { code: 0, delegated: undefined });
  });

  it('hands every other case to `ferry wal fetch --async` with the same arguments', () => {
    const spool = join(tmp.path, 'spool-d');
    const env = { FERRY_REPO: repo, FERRY_SPOOL: spool };
    const delegated = (args: string[], e: Record<string, string> = env) => {
      const r = script.run(args, e);
      assert.equal(r.code, 3, `delegated: ${args.join(' ')}`);
      assert.deepEqual(r.delegated, ['wal', 'fetch', '--async', ...args]);
    };
    delegated([NAME, dest]); // nothing prefetched yet
    spoolWith(spool, { forRepo: 'file:///another/repo' });
    delegated([NAME, dest]); // prefetched for another repository
    spoolWith(spool, { pid: 999999999 });
    delegated([NAME, dest]); // the worker is gone
    spoolWith(spool, { pid: otherProgram.pid });
    delegated([NAME, dest]); // the pid is another program's
    const src = spoolWith(spool, { files: [NAME, '00000002.history', `${NAME}.partial`] });
    delegated(['000000010000000000000009', dest]); // a name not prefetched
    delegated(['00000002.history', dest]); // not a segment
    delegated([`${NAME}.partial`, dest]);
    delegated([NAME, dest], { FERRY_SPOOL: spool }); // the repository would come from ferry.yaml
    delegated([NAME, dest, '--json']); // an option the script does not know
    delegated([NAME, dest, dest]); // three paths: ferry reports the usage error
    delegated([NAME, `${pgWal}/../pg_wal/RECOVERYXLOG`]); // a path that needs normalising
    delegated([NAME, dest], { FERRY_REPO: 'file:///a"b', FERRY_SPOOL: spool }); // a URL JSON would escape
    delegated([NAME, dest], { FERRY_REPO: repo, FERRY_SPOOL: 'relative/spool' });
    delegated([NAME, join(tmp.path, 'no-such-dir', 'RECOVERYXLOG')]); // a destination that cannot be written
    assert.ok(existsSync(src), 'a file it did not serve stays for the worker');
    rmSync(dest, { force: true });
    assert.equal(script.run([NAME, dest], env).code, 0, 'and the matching call is still answered');
  });
});
