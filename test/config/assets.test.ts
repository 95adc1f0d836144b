/** ferry.yaml assets: validation with one clear error, lookup by name and type. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { assetsOf, findAsset } from '../../src/config/assets.ts';
import type { Settings } from '../../src/config/load.ts';

const settings = (assets: Record<string, unknown>[]): Settings => ({ configPath: '/etc/ferry.yaml', file: { assets } });

it('reads every asset type and finds one by name and type', () => {
  const s = settings([
    { name: 'resumes', type: 's3', bucket: 'b', prefix: 'uploads/', endpoint: 'http://127.0.0.1:9000' },
    { name: 'uploads', type: 'directory', path: '/srv/uploads' },
    { name: 'app-env', type: 'secrets', file: '/etc/app/env' },
    { name: 'config', type: 'git', repo: '/srv/git/config.git' },
    { name: 'cache', type: 'none', reason: 'Redis: cache only' },
    { name: 'db', type: 'postgres' },
  ]);
  assert.deepEqual(assetsOf(s).map((a) => a.type), ['s3', 'directory', 'secrets', 'git', 'none', 'postgres']);
  assert.equal(findAsset(s, 'resumes', 's3').bucket, 'b');
  assert.equal(findAsset(s, 'app-env', 'secrets').keep_days, 90);
  assert.throws(() => findAsset(s, 'uploads', 's3'), /asset "uploads" is of type directory, not s3/);
  assert.throws(() => findAsset(s, 'nope', 's3'), /no asset named "nope" in \/etc\/ferry.yaml/);
});

it('rejects bad assets with one clear line', () => {
  const bad: [Record<string, unknown>[], RegExp][] = [
    [[{ name: 'x', type: 'ftp' }], /assets\[0\] \(x\): type must be one of s3, directory/],
    [[{ name: 'x', type: 's3' }], /assets\[0\] \(x\): bucket: /],
    [[{ name: 'x', type: 'secrets', file: '/a', dir: '/b' }], /exactly one of file, dir or command/],
    [[{ name: 'x', type: 'none' }], /reason/],
    [[{ name: 'a b', type: 'directory', path: '/x' }], /name: names are/],
    [[{ name: 'x', type: 'directory', path: '/x' }, { name: 'x', type: 'git', repo: '/y' }], /"x" is used twice/],
  ];
  for (const [assets, re] of bad) assert.throws(() => assetsOf(settings(assets)), re);
});
