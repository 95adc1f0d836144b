/**
 * `ferry git …` run as a child process against real git repositories: a snapshot per
 * change of refs, none when nothing changed, and each snapshot restored with every
 * ref (branches, annotated tag) and HEAD as they were when it was taken.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ferry, ferryOk, type FerryResult } from '../harness/cli.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';

let tmp: TempDir;
let env: Record<string, string>;

function git(dir: string, ...args: string[]): string {
  return execFileSync('/usr/bin/git', ['-C', dir, ...args], {
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' },
  });
}

/** Every ref with the object it names (rev-parse of all refs), and where HEAD points. */
function refsOf(dir: string): { refs: string; head: string } {
  return { refs: git(dir, 'for-each-ref', '--format=%(refname) %(objectname)'), head: `${git(dir, 'symbolic-ref', 'HEAD').trim()} ${git(dir, 'rev-parse', 'HEAD').trim()}` };
}

function commit(dir: string, file: string, text: string, msg: string): void {
  execFileSync('sh', ['-c', `printf '%s' "$1" > "$2"`, 'sh', text, join(dir, file)]);
  git(dir, 'add', file);
  git(dir, 'commit', '-q', '-m', msg);
}

function json<T>(r: FerryResult): T {
  return JSON.parse(r.stdout) as T;
}

const run = (args: string[]) => ferryOk(args, { env, cwd: tmp.path });

before(async () => {
  tmp = makeTempDir('ferry-git-');
  env = { FERRY_REPO: join(tmp.path, 'repo'), FERRY_KEY_FILE: join(tmp.path, 'key'), FERRY_CONFIG: join(tmp.path, 'ferry.yaml') };
  await writeFile(
    join(tmp.path, 'ferry.yaml'),
    ['assets:', '  - { name: app-config, type: git, repo: app-config }', '  - { name: bare-config, type: git, repo: bare.git }', '  - { name: nowhere, type: git, repo: missing }', ''].join('\n'),
  );
  await ferryOk(['init', '--key-file', env.FERRY_KEY_FILE], { env, cwd: tmp.path });
  const src = join(tmp.path, 'app-config');
  await mkdir(src);
  git(src, 'init', '-q', '-b', 'main');
  commit(src, 'app.yaml', 'replicas: 2\n', 'first');
  git(src, 'checkout', '-q', '-b', 'staging');
  commit(src, 'staging.yaml', 'replicas: 1\n', 'staging');
  git(src, 'tag', '-a', 'v1.0', '-m', 'release 1.0');
  git(src, 'checkout', '-q', 'main');
  commit(src, 'app.yaml', 'replicas: 3\n', 'scale');
});

after(() => tmp?.cleanup());

interface Snap {
  id: string;
  refs: number;
}

describe('git snapshots', () => {
  const src = () => join(tmp.path, 'app-config');
  const states: ReturnType<typeof refsOf>[] = [];

  it('stores a bundle when refs change and nothing when they do not', async () => {
    states.push(refsOf(src()));
    const s1 = json<{ stored: boolean; snapshot: Snap }>(await run(['git', 'snapshot', 'app-config', '--json']));
    assert.equal(s1.stored, true);
    assert.equal(s1.snapshot.refs, 3);
    const same = json<{ stored: boolean; snapshot: Snap }>(await run(['git', 'snapshot', 'app-config', '--json']));
    assert.equal(same.stored, false);
    assert.equal(same.snapshot.id, s1.snapshot.id);

    commit(src(), 'app.yaml', 'replicas: 4\n', 'scale again');
    git(src(), 'checkout', '-q', 'staging');
    commit(src(), 'staging.yaml', 'replicas: 2\n', 'staging up');
    git(src(), 'tag', 'v1.1');
    states.push(refsOf(src()));
    const s2 = json<{ stored: boolean; snapshot: Snap }>(await run(['git', 'snapshot', 'app-config', '--json']));
    assert.equal(s2.stored, true);
    assert.equal(s2.snapshot.refs, 4);
    const human = await run(['git', 'snapshot', 'app-config']);
    assert.match(human.stdout, /no new commits or refs/);

    const list = json<{ snapshots: Snap[] }>(await run(['git', 'snapshots', 'app-config', '--json'])).snapshots;
    assert.deepEqual(
      list.map((s) => s.id),
      [s1.snapshot.id, s2.snapshot.id],
    );
    assert.match((await run(['git', 'snapshots', 'app-config'])).stdout, /refs\/heads\/staging/);
  });

  it('restores each snapshot with every ref and HEAD as they were', async () => {
    const list = json<{ snapshots: Snap[] }>(await run(['git', 'snapshots', 'app-config', '--json'])).snapshots;
    for (const [i, s] of list.entries()) {
      const to = join(tmp.path, `restored-${i}`);
      await run(['git', 'restore', 'app-config', '--snapshot', s.id.slice(0, 8), '--to', to]);
      assert.deepEqual(refsOf(to), states[i], `snapshot ${i + 1}`);
      assert.equal(git(to, 'status', '--porcelain'), '', 'the work tree is checked out clean');
      git(to, 'fsck', '--no-progress');
    }
    const latest = join(tmp.path, 'restored-latest');
    await run(['git', 'restore', 'app-config', '--to', latest]);
    assert.deepEqual(refsOf(latest), states[1]);
  });

  it('refuses a non-empty directory and missing repositories', async () => {
    const busy = await ferry(['git', 'restore', 'app-config', '--to', join(tmp.path, 'restored-0')], { env, cwd: tmp.path });
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /is not empty/);
    const noTo = await ferry(['git', 'restore', 'app-config'], { env, cwd: tmp.path });
    assert.equal(noTo.code, 2);
    const missing = await ferry(['git', 'snapshot', 'nowhere'], { env, cwd: tmp.path });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist/);
  });

  it('keeps a bare repository bare', async () => {
    const bare = join(tmp.path, 'bare.git');
    execFileSync('/usr/bin/git', ['clone', '-q', '--bare', join(tmp.path, 'app-config'), bare]);
    const want = refsOf(bare);
    await run(['git', 'snapshot', 'bare-config']);
    const to = join(tmp.path, 'bare-restored');
    const r = json<{ bare: boolean }>(await run(['git', 'restore', 'bare-config', '--to', to, '--json']));
    assert.equal(r.bare, true);
    assert.equal(git(to, 'rev-parse', '--is-bare-repository').trim(), 'true');
    assert.deepEqual(refsOf(to), want);
  });
});
