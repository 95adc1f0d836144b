/**
 * Global options work before the command as well as after it (`ferry -v pg restore ...`,
 * `ferry --repo R --json snapshots`), through bin/ferry as a user types them; a command's
 * own options before the command are still refused as bad usage (exit 2).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { hoistGlobalOptions } from '../../src/cli/main.ts';
import { ferry, ferryOk } from '../harness/cli.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';

describe('hoistGlobalOptions', () => {
  it('moves leading global options (with their values) after the command', () => {
    assert.deepEqual(hoistGlobalOptions(['-v', 'pg', 'restore', '--target-dir', 'd']), ['pg', 'restore', '--target-dir', 'd', '-v']);
    assert.deepEqual(hoistGlobalOptions(['--repo', '/r', '--json', 'snapshots']), ['snapshots', '--repo', '/r', '--json']);
    assert.deepEqual(hoistGlobalOptions(['--repo=/r', '-q', 'wal', 'list']), ['wal', 'list', '--repo=/r', '-q']);
  });
  it('leaves everything else where it is', () => {
    assert.deepEqual(hoistGlobalOptions(['snapshots', '--json']), ['snapshots', '--json']);
    assert.deepEqual(hoistGlobalOptions(['--target-dir', 'd', 'pg', 'restore']), ['--target-dir', 'd', 'pg', 'restore']);
    assert.deepEqual(hoistGlobalOptions(['--help']), ['--help']);
  });
});

describe('global options before the command, through bin/ferry', () => {
  let tmp: TempDir;
  before(() => {
    tmp = makeTempDir('ferry-global-opts-');
  });
  after(() => tmp?.cleanup());

  it('`ferry --repo R --json snapshots` reads that repository and prints JSON', async () => {
    const repo = join(tmp.path, 'repo');
    const env = { FERRY_PASSWORD: 'pw' };
    await ferryOk(['--repo', repo, 'init'], { env });
    const r = await ferryOk(['--repo', repo, '--json', 'snapshots'], { env });
    assert.deepEqual(JSON.parse(r.stdout), []);
    const v = await ferryOk(['-v', '--repo', repo, 'snapshots'], { env });
    assert.match(v.stderr, /config/, 'verbose logs storage calls to stderr');
  });

  it('a command option before the command is bad usage, exit 2', async () => {
    const r = await ferry(['--target-dir', '/x', 'pg', 'restore'], { env: { FERRY_PASSWORD: 'pw' } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /unknown command/);
  });
});
