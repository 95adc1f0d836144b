/**
 * `ferry objects snapshot NAME --watch --interval 2`: a new file is protected
 * within the interval plus a few seconds. Timings are measured and reported
 * (t.diagnostic), never asserted: the test asserts the file is eventually
 * restorable and that SIGINT stops the watcher cleanly (exit 0, lock released).
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { childEnv, ensureBuilt, FERRY, ferry, ferryOk } from '../harness/cli.ts';
import { makeTempDir, onExitStop, type TempDir } from '../harness/tmp.ts';
import { Repository } from '../../src/repo/repository.ts';
import { FsStorage } from '../../src/storage/fs.ts';
import { chooseVersion, objectVersions, readNode } from '../../src/objects/history.ts';
import { listLocks } from '../../src/repo/lock.ts';
import { sha } from './dataset.ts';

let tmp: TempDir;
let env: Record<string, string>;

before(async () => {
  tmp = makeTempDir('ferry-objects-watch-');
  const dir = join(tmp.path, 'dir');
  await mkdir(dir);
  for (let i = 0; i < 50; i++) await writeFile(join(dir, `f${i}.bin`), randomBytes(20_000));
  await writeFile(join(tmp.path, 'ferry.yaml'), `assets:\n  - { name: uploads, type: directory, path: "${dir}" }\n`);
  env = { FERRY_REPO: join(tmp.path, 'repo'), FERRY_PASSWORD: 'pw', FERRY_CONFIG: join(tmp.path, 'ferry.yaml') };
  await ferryOk(['init'], { env });
});

after(() => tmp?.cleanup());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('protects a new file within the interval plus a few seconds, and stops cleanly on SIGINT', async (t) => {
  ensureBuilt();
  const child = spawn(FERRY, ['objects', 'snapshot', 'uploads', '--watch', '--interval', '2', '--json'], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const unhook = onExitStop(() => child.kill('SIGKILL'));
  const rounds: { round: number; rpoMs: number; storeMs: number; time: string }[] = [];
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    const lines = stdout.split('\n');
    stdout = lines.pop()!;
    for (const l of lines) if (l.trim()) rounds.push(JSON.parse(l));
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  try {
    const deadline = Date.now() + 60_000;
    while (rounds.length < 1 && Date.now() < deadline) await sleep(100);
    assert.ok(rounds.length >= 1, `a first round within 60 s (stderr: ${stderr})`);

    const data = randomBytes(123_456);
    const written = Date.now();
    await writeFile(join(tmp.path, 'dir', 'new-upload.bin'), data);
    let protectedAt: number | undefined;
    const repo = await Repository.open(new FsStorage(env.FERRY_REPO), [{ kind: 'passphrase', passphrase: 'pw' }]);
    while (protectedAt === undefined && Date.now() < written + 60_000) {
      await repo.loadIndex(true);
      const vs = await objectVersions(repo, 'uploads', 'new-upload.bin');
      if (vs.length) {
        protectedAt = Date.now();
        assert.equal(sha(await readNode(repo, chooseVersion(vs, 'new-upload.bin', {}).node!)), sha(data));
      } else await sleep(100);
    }
    assert.ok(protectedAt !== undefined, 'the new file is eventually in a snapshot');
    const rpo = rounds.map((r) => r.rpoMs);
    t.diagnostic(`new file protected ${protectedAt - written} ms after it was written (interval 2000 ms); reported RPO per round: ${rpo.join(', ')} ms`);
  } finally {
    child.kill('SIGINT');
    const code = await exited;
    unhook();
    assert.equal(code, 0, `exit after SIGINT (stderr: ${stderr})`);
  }
  const repo = await Repository.open(new FsStorage(env.FERRY_REPO), [{ kind: 'passphrase', passphrase: 'pw' }]);
  assert.deepEqual(await listLocks(repo), [], 'no lock left behind');
  assert.ok(rounds.every((r) => r.rpoMs >= 2000 && r.rpoMs === 2000 + r.storeMs));
});

it('stops at once when the first round fails (a setup problem), with one clear error', async () => {
  const r = await ferry(['objects', 'snapshot', 'uploads', '--watch', '--interval', '1'], { env: { ...env, FERRY_PASSWORD: 'wrong' } });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ferry: error: /m);
});
