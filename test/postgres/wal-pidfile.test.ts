/**
 * The push worker's pid file (takePidFile in src/postgres/wal-async.ts): of workers
 * started at the same moment exactly one runs, and a file left by a dead worker or
 * naming some other program is taken over. Real processes race on a real directory.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { takePidFile, workerRunning, PUSH_WORKER_MARKER } from '../../src/postgres/wal-async.ts';

const MODULE = new URL('../../src/postgres/wal-async.ts', import.meta.url).href;

/**
 * A child that waits for `go`, then takes `pidFile` and prints `won` (holding it for
 * `holdMs`) or `lost`. Its command line carries the worker marker, as a real worker's does.
 */
const CHILD = `
const { existsSync } = await import('node:fs');
const { takePidFile } = await import(process.argv.at(-4));
const [pidFile, go, holdMs] = process.argv.slice(-3);
while (!existsSync(go)) await new Promise((r) => setTimeout(r, 1));
const release = takePidFile(pidFile, ${JSON.stringify(PUSH_WORKER_MARKER)});
process.stdout.write(release ? 'won' : 'lost');
if (release) { await new Promise((r) => setTimeout(r, Number(holdMs))); release(); }
`;

function child(pidFile: string, go: string, holdMs: number): Promise<string> {
  const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, PUSH_WORKER_MARKER, MODULE, pidFile, go, String(holdMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}: ${out}`))));
  });
}

describe('push worker pid file', () => {
  let tmp: TempDir;
  before(() => {
    tmp = makeTempDir('ferry-pidfile-');
  });
  after(() => tmp?.cleanup());

  it('lets exactly one of several workers started at once run, and leaves no temp file', async () => {
    for (let round = 0; round < 3; round++) {
      const pidFile = join(tmp.path, `race-${round}.pid`);
      const go = join(tmp.path, `go-${round}`);
      const racers = Array.from({ length: 6 }, () => child(pidFile, go, 1500));
      await new Promise((r) => setTimeout(r, 2500)); // every child is waiting for go
      writeFileSync(go, '');
      const results = await Promise.all(racers);
      assert.equal(results.filter((r) => r === 'won').length, 1, `round ${round}: ${results.join(' ')}`);
      assert.equal(results.filter((r) => r === 'lost').length, 5);
    }
    assert.deepEqual(readdirSync(tmp.path).filter((n) => n.endsWith('.pid') || n.includes('.tmp')), [], 'released and no temp file left');
  });

  it('takes over a file left by a dead worker or naming another program, never a live worker', async () => {
    const pidFile = join(tmp.path, 'stale.pid');
    writeFileSync(pidFile, '999999999\n'); // no such process
    const release = takePidFile(pidFile, PUSH_WORKER_MARKER);
    assert.ok(release, 'a dead worker is replaced');
    assert.equal(readFileSync(pidFile, 'utf8'), `${process.pid}\n`);
    release();
    writeFileSync(pidFile, `${process.pid}\n`); // alive, but this test runner is not a push worker
    const again = takePidFile(pidFile, 'no-such-marker-in-this-command-line');
    assert.ok(again, 'a recycled pid of another program is replaced');
    again();
    const go = join(tmp.path, 'go-live');
    writeFileSync(go, '');
    const live = child(pidFile, go, 3000);
    const until = Date.now() + 20_000;
    while (!workerRunning(pidFile, PUSH_WORKER_MARKER)) {
      assert.ok(Date.now() < until, 'the child took the pid file');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(takePidFile(pidFile, PUSH_WORKER_MARKER), undefined, 'a live worker keeps its file');
    assert.equal(await live, 'won');
  });
});
