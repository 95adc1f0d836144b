/** Pure decisions of `ferry objects`: change detection, version folding, the snapshot at a time, safe paths, audit verdicts. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { unchanged } from '../../src/objects/snapshot.ts';
import { chooseVersion, foldVersions, snapshotAt } from '../../src/objects/history.ts';
import { pathUnder, safeRelative } from '../../src/objects/source.ts';
import { auditAsset } from '../../src/objects/audit.ts';
import type { TreeNode } from '../../src/repo/tree.ts';
import type { SnapshotRef } from '../../src/repo/manifest.ts';

const node = (checksum: string, size = 10, extra?: Record<string, unknown>): TreeNode => ({ path: 'k', type: 'file', mode: 0o644, mtimeNs: '1000000000', size, uid: 0, gid: 0, ino: 0, checksum, blobs: [], ...(extra ? { extra } : {}) });
const snap = (id: string, listedAt: string, asset = 'a', kind = 'objects'): SnapshotRef =>
  ({ id, manifest: { kind, asset, startTime: listedAt, endTime: listedAt, meta: { listedAt } } }) as unknown as SnapshotRef;

describe('unchanged', () => {
  it('uses the ETag where there is one, else size and mtime', () => {
    assert.equal(unchanged(node('c', 10, { etag: 'e1' }), { key: 'k', size: 10, mtimeMs: 5, etag: 'e1' }), true);
    assert.equal(unchanged(node('c', 10, { etag: 'e1' }), { key: 'k', size: 10, mtimeMs: 1000, etag: 'e2' }), false);
    assert.equal(unchanged(node('c', 10), { key: 'k', size: 11, mtimeMs: 1000 }), false);
    assert.equal(unchanged(node('c', 10), { key: 'k', size: 10, mtimeMs: 1000 }), true);
    assert.equal(unchanged(node('c', 10), { key: 'k', size: 10, mtimeMs: 1000, mtimeNs: '1000000001' }), false);
    assert.equal(unchanged(undefined, { key: 'k', size: 10, mtimeMs: 1000 }), false);
  });
});

describe('foldVersions', () => {
  const seen = [
    { snapshot: 's1', time: 1000, node: node('aaaaaaaaaaaaaaaa') },
    { snapshot: 's2', time: 2000, node: node('aaaaaaaaaaaaaaaa') },
    { snapshot: 's3', time: 3000, node: node('bbbbbbbbbbbbbbbb', 20, { versionId: 'v-native' }) },
    { snapshot: 's4', time: 4000 },
    { snapshot: 's5', time: 5000 },
    { snapshot: 's6', time: 6000, node: node('aaaaaaaaaaaaaaaa') },
  ];
  const vs = foldVersions('k', seen);
  it('lists each version once, deletions as markers', () => {
    assert.deepEqual(
      vs.map((v) => [v.deleted ? 'deleted' : v.version, v.snapshot, v.lastSeen.slice(17, 19)]),
      [
        ['aaaaaaaaaaaa', 's1', '02'],
        ['bbbbbbbbbbbb', 's3', '03'],
        ['deleted', 's4', '05'],
        ['aaaaaaaaaaaa', 's6', '06'],
      ],
    );
    assert.equal(vs[1].nativeVersionId, 'v-native');
  });
  it('chooses by version prefix, native id, time, or the newest', () => {
    assert.equal(chooseVersion(vs, 'k', { version: 'bbbb' }).snapshot, 's3');
    assert.equal(chooseVersion(vs, 'k', { version: 'v-native' }).snapshot, 's3');
    assert.equal(chooseVersion(vs, 'k', { at: 2500 }).snapshot, 's1');
    assert.equal(chooseVersion(vs, 'k', {}).snapshot, 's6');
    assert.throws(() => chooseVersion(vs, 'k', { at: 4500 }), /was deleted at/);
    assert.throws(() => chooseVersion(vs, 'k', { at: 500 }), /no snapshot saw/);
    assert.throws(() => chooseVersion(vs, 'k', { version: 'cccc' }), /has no version cccc/);
  });
});

describe('snapshotAt', () => {
  it('takes the last snapshot listed at or before the time', () => {
    const s = [snap('x', '2026-01-01T00:00:00Z'), snap('y', '2026-01-02T00:00:00Z')];
    assert.equal(snapshotAt(s, Date.parse('2025-12-31T00:00:00Z')), undefined);
    assert.equal(snapshotAt(s, Date.parse('2026-01-01T00:00:00Z'))?.id, 'x');
    assert.equal(snapshotAt(s, Date.parse('2026-01-01T12:00:00Z'))?.id, 'x');
    assert.equal(snapshotAt(s, Date.parse('2026-02-01T00:00:00Z'))?.id, 'y');
  });
});

describe('keys as paths', () => {
  it('refuses keys that would escape the target', () => {
    assert.equal(safeRelative('a/b.txt'), true);
    for (const k of ['/etc/passwd', '../x', 'a/../../x', 'a//b', './a', '']) assert.equal(safeRelative(k), false, k);
    assert.equal(pathUnder('/t', 'a/b'), '/t/a/b');
    assert.throws(() => pathUnder('/t', 'a/../../etc/passwd'), /cannot be written as a path under/);
  });
});

describe('auditAsset', () => {
  const now = Date.parse('2026-01-02T00:00:00Z');
  it('names what protects an asset, or why nothing does', () => {
    assert.equal(auditAsset({ name: 'r', type: 'none', reason: 'cache' }, [], undefined, now).verdict, 'declared-unprotected');
    const d = auditAsset({ name: 'd', type: 'directory', path: '/x' }, [snap('x', '2026-01-01T00:00:00Z', 'd')], undefined, now);
    assert.equal(d.verdict, 'protected');
    assert.equal(d.snapshots?.ageSeconds, 86_400);
    const s3 = { name: 'b', type: 's3' as const, bucket: 'b', prefix: '' };
    const native = [{ setting: 'versioning' as const, status: 'native' as const, detail: 'versioning Enabled' }];
    assert.equal(auditAsset(s3, [], native, now).verdict, 'protected');
    assert.equal(auditAsset(s3, [], [{ setting: 'versioning', status: 'unsupported', detail: 'x', standIn: 'y' }], now).verdict, 'unprotected');
    assert.equal(auditAsset(s3, undefined, undefined, now, 'no repository').notes[0], 'no repository');
  });
});
