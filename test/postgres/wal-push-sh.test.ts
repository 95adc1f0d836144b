/**
 * bin/ferry-wal-push, the shell archive_command of async mode. First the script alone,
 * with a stand-in `ferry` beside it that records how it was called: it must answer
 * exactly the case `wal push --async` answers from a done marker (same file, same
 * repository, the spool `ferry` would use) and hand every other case to
 * `ferry wal push --async` with the arguments unchanged. Then against real
 * PostgreSQL 15: archive_command = ferry-wal-push under pgbench load, every segment
 * stored byte-identical and most answered from the worker's markers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY, ROOT, childEnv, ferryOk } from '../harness/cli.ts';
import { defaultSpoolUnder, scriptWithStandIn, type ScriptWithStandIn } from '../harness/walscript.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { chownToPostgres, makeTempDir, type TempDir } from '../harness/tmp.ts';
import { waitArchived } from '../harness/archive.ts';
import { doneMarkerText, fileIdentity, spoolLayout, waitWorkerGone, workerRunning, PUSH_WORKER_MARKER } from '../../src/postgres/wal-async.ts';

const SCRIPT = join(ROOT, 'bin', 'ferry-wal-push');
const NAME = '00000001000000000000000A';

describe('ferry-wal-push, the script alone', () => {
  let tmp: TempDir;
  let script: ScriptWithStandIn;
  let walDir: string;
  let wal: string;
  const repo = 's3://bucket/ferry prefix';

  before(() => {
    tmp = makeTempDir('ferry-walpush-sh-');
    script = scriptWithStandIn(tmp.path, 'ferry-wal-push');
    walDir = join(tmp.path, 'data', 'pg_wal');
    mkdirSync(walDir, { recursive: true });
    wal = join(walDir, NAME);
    writeFileSync(wal, Buffer.alloc(1 << 20, 7));
  });
  after(() => tmp?.cleanup());

  const run = (args: string[], env: Record<string, string>, cwd?: string) => script.run(args, env, cwd);

  async function mark(spool: string, forRepo = repo, identity?: string): Promise<{ done: string; queued: string }> {
    const L = spoolLayout(spool);
    mkdirSync(L.done, { recursive: true });
    mkdirSync(L.queue, { recursive: true });
    const done = join(L.done, NAME);
    const queued = join(L.queue, NAME);
    writeFileSync(done, doneMarkerText({ identity: identity ?? (await fileIdentity(wal))!, repo: forRepo, outcome: 'stored', storedBytes: 123, at: Date.now() }));
    writeFileSync(queued, '{}');
    return { done, queued };
  }

  it('answers from a matching marker in an explicit spool, removing it and the queued request', async () => {
    const spool = join(tmp.path, 'spool-a');
    const m = await mark(spool);
    const r = run([wal], { FERRY_REPO: repo, FERRY_SPOOL: spool });
    assert.deepEqual(r, { code: 0, delegated: undefined });
    assert.ok(!existsSync(m.done) && !existsSync(m.queued));
    // The marker is used once: the same call again goes to ferry.
    assert.deepEqual(run([wal], { FERRY_REPO: repo, FERRY_SPOOL: spool }).delegated, ['wal', 'push', '--async', wal]);
  });

  it('finds the spool ferry picks by default, from a path relative to the data directory', async () => {
    const tmpdir = join(tmp.path, 'tmpdir');
    mkdirSync(tmpdir);
    const spool = defaultSpoolUnder(tmpdir, repo, walDir);
    assert.ok(spool.startsWith(tmpdir + '/ferry-spool-'));
    await mark(spool);
    const r = run([`pg_wal/${NAME}`], { FERRY_REPO: repo, TMPDIR: `${tmpdir}/` }, join(tmp.path, 'data'));
    assert.deepEqual(r, { code: 0, delegated: undefined });
  });

  it('takes --repo and --spool (both spellings) over the environment, and skips the values of --parallel and --timeout', async () => {
    const spool = join(tmp.path, 'spool-b');
    await mark(spool, 'file:///srv/other');
    const r = run(['--parallel', '8', '--repo', 'file:///srv/other', `--spool=${spool}`, '--timeout', '30', wal], { FERRY_REPO: repo, FERRY_SPOOL: '/nowhere' });
    assert.deepEqual(r, { code: 0, delegated: undefined });
  });

  it('hands every other case to `ferry wal push --async` with the same arguments', async () => {
    const spool = join(tmp.path, 'spool-c');
    const env = { FERRY_REPO: repo, FERRY_SPOOL: spool };
    const delegated = (args: string[], e: Record<string, string> = env, cwd?: string) => {
      const r = run(args, e, cwd);
      assert.equal(r.code, 3, `delegated: ${args.join(' ')}`);
      assert.deepEqual(r.delegated, ['wal', 'push', '--async', ...args]);
    };
    delegated([wal]); // no marker yet
    await mark(spool, 'file:///another/repo');
    delegated([wal]); // the marker is for another repository
    await mark(spool, repo, '1:2:3:4');
    delegated([wal]); // for another file with this name
    const m = await mark(spool);
    utimesSync(wal, new Date(), new Date(Date.now() - 5000));
    delegated([wal]); // the file changed since the worker read it
    await mark(spool);
    delegated([wal], { FERRY_SPOOL: spool }); // the repository would come from ferry.yaml
    delegated([wal, '--verbose']); // an option the script does not know
    delegated([wal, wal]); // two paths: ferry reports the usage error
    delegated([`${walDir}/../pg_wal/${NAME}`]); // a path that needs normalising
    delegated([`${walDir}/${NAME}.partial`]); // not a plain segment
    delegated([wal], { FERRY_REPO: 'file:///a"b', FERRY_SPOOL: spool }); // a URL JSON would escape
    delegated([wal], { FERRY_REPO: repo, FERRY_SPOOL: 'relative/spool' });
    assert.ok(existsSync(m.done), 'a marker it did not use is left for ferry');
    assert.equal(run([wal], env).code, 0, 'and the matching one is still answered');
  });
});

describe('ferry-wal-push with a push worker running', () => {
  // A real push worker and repository; the `ferry` beside the script is the recording
  // stand-in again, so a call it answers without delegating was answered by the worker.
  let tmp: TempDir;
  let script: ScriptWithStandIn;
  let walDir: string;
  let spool: string;
  let env: Record<string, string>;
  let worker: ChildProcess | undefined;

  before(async () => {
    tmp = makeTempDir('ferry-walpush-sh-worker-');
    script = scriptWithStandIn(tmp.path, 'ferry-wal-push');
    walDir = join(tmp.path, 'pg_wal');
    mkdirSync(walDir);
    spool = join(tmp.path, 'spool');
    const repo = join(tmp.path, 'repo');
    const keyFile = join(tmp.path, 'ferry.key');
    await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
    env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile };
  });
  after(async () => {
    await stopWorker();
    tmp?.cleanup();
  });

  async function startWorker(): Promise<void> {
    worker = spawn(FERRY, ['wal', 'push-worker', '--spool', spool, '--wal-dir', walDir, '--idle-exit', '120'], { env: childEnv(env), stdio: 'ignore' });
    const until = Date.now() + 20_000;
    while (!workerRunning(spoolLayout(spool).pushPid, PUSH_WORKER_MARKER)) {
      assert.ok(Date.now() < until, 'the push worker started');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  async function stopWorker(): Promise<void> {
    const w = worker;
    worker = undefined;
    if (!w || w.exitCode !== null) return;
    const gone = new Promise((r) => w.once('exit', r));
    w.kill('SIGTERM');
    await gone;
  }
  function segment(name: string, fill: number): string {
    const path = join(walDir, name);
    writeFileSync(path, Buffer.alloc(1 << 20, fill));
    return path;
  }
  const run = (args: string[], e: Record<string, string> = env) => script.run(args, { FERRY_SPOOL: spool, ...e });

  it('hands a segment to the worker and exits 0 only once it is stored, without starting ferry', async () => {
    await startWorker();
    const L = spoolLayout(spool);
    for (const [i, name] of ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'].entries()) {
      const path = segment(name, i + 1);
      assert.deepEqual(run([path]), { code: 0, delegated: undefined }, name);
      const back = join(tmp.path, 'back');
      await ferryOk(['wal', 'fetch', name, back], { env });
      assert.ok(readFileSync(back).equals(readFileSync(path)), `${name} is in the repository, byte-identical`);
      assert.ok(!existsSync(join(L.done, name)) && !existsSync(join(L.queue, name)), 'its marker and request are gone');
    }
  });

  it('goes the slow way when the worker answers with an error, and when no worker runs', async () => {
    const path = segment('000000010000000000000004', 9);
    // A worker archives into one repository only: a request for another is refused with an error.
    const other = run([path], { ...env, FERRY_REPO: 'file:///elsewhere' });
    assert.deepEqual(other, { code: 3, delegated: ['wal', 'push', '--async', path] });
    await stopWorker();
    assert.ok(await waitWorkerGone(spoolLayout(spool).pushPid, PUSH_WORKER_MARKER, 20_000));
    assert.deepEqual(run([path]), { code: 3, delegated: ['wal', 'push', '--async', path] });
  });
});

describe('ferry-wal-push as archive_command', () => {
  let tmp: TempDir;
  let cluster: TestCluster;
  let copies: string;
  let spool: string;
  let env: Record<string, string>;

  before(async () => {
    tmp = makeTempDir('ferry-walpush-sh-pg-', { forPostgres: true });
    const repo = join(tmp.path, 'repo');
    const keyFile = join(tmp.path, 'ferry.key');
    copies = join(tmp.path, 'copies');
    spool = join(tmp.path, 'spool');
    mkdirSync(copies);
    await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
    await chownToPostgres(tmp.path);
    env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, FERRY_WAL_IDLE_EXIT: '3' };
    const cmd = `${SCRIPT} --spool ${spool} %p && cp %p ${copies}/%f`;
    cluster = await startCluster({ conf: ['archive_mode = on', `archive_command = '${cmd}'`], env });
  });
  after(async () => {
    await cluster?.destroy();
    tmp?.cleanup();
  });

  it('archives every segment byte-identical under pgbench load, through the push worker', async () => {
    await cluster.pgbench(['-i', '-s', '5', '-q']);
    await cluster.pgbench(['-c', '2', '-T', '3', '-n']);
    const [{ name }] = await cluster.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
    await waitArchived(cluster, name);
    const [st] = await cluster.query<{ fc: string }>('SELECT failed_count AS fc FROM pg_stat_archiver');
    assert.equal(Number(st.fc), 0, `no archive_command failed\n${cluster.logTail(20)}`);
    const names = readdirSync(copies).sort();
    assert.ok(names.length >= 5, names.join(' '));
    const out = join(tmp.path, 'check');
    for (const n of names) {
      await ferryOk(['wal', 'fetch', n, out], { env });
      assert.ok(readFileSync(out).equals(readFileSync(join(copies, n))), `${n} fetched back identical`);
    }
    const L = spoolLayout(spool);
    assert.ok(await waitWorkerGone(L.pushPid, PUSH_WORKER_MARKER, 20_000), 'the push worker exits once idle');
    const log = readFileSync(join(spool, 'push-worker.log'), 'utf8');
    const pushed = [...log.matchAll(/exiting: pushed (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    assert.ok(pushed >= names.length, `the worker pushed every segment (${pushed} of ${names.length})`);
    assert.deepEqual(readdirSync(L.queue), [], 'no request left in the queue');
    // On failure, what the worker did and what the marker says (a stale marker names its outcome and time).
    const left = readdirSync(L.done).map((n) => `${n}: ${readFileSync(join(L.done, n), 'utf8')}`);
    assert.deepEqual(left, [], `every marker was taken\n${log}`);
  });
});
