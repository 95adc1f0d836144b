/** The pure replication decisions: what to copy, in which order, and the lag. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyLag, phaseOf, planCopy } from '../../src/replicate/plan.ts';
import { metricsText, newestWal, type RepoStatus } from '../../src/replicate/status.ts';

const o = (key: string, size: number, mtime: number) => ({ key, size, mtime });

describe('planCopy', () => {
  it('orders keys, config, data and WAL, index, then manifests and runs; never locks', () => {
    const src = [
      o('snapshots/s1', 10, 5),
      o('runs/r1', 10, 6),
      o('index/i1', 10, 4),
      o('data/ab/abcd', 100, 3),
      o('wal/00000001/000000010000000000000003', 50, 2),
      o('config', 5, 0),
      o('keys/k1', 5, 0),
      o('locks/l1', 5, 9),
      o('future/thing', 5, 1),
    ];
    const plan = planCopy(src, new Map());
    assert.deepEqual(
      plan.phases.map((p) => [p.phase, p.items.map((i) => i.key)]),
      [
        ['keys', ['keys/k1']],
        ['config', ['config']],
        ['data', ['future/thing', 'wal/00000001/000000010000000000000003', 'data/ab/abcd']],
        ['index', ['index/i1']],
        ['manifests', ['snapshots/s1', 'runs/r1']],
      ],
    );
    assert.equal(plan.total, 8);
    assert.equal(phaseOf('locks/x'), undefined);
  });

  it('skips what the destination holds with the same size and redoes a partial copy', () => {
    const src = [o('data/ab/ab1', 100, 1), o('data/ab/ab2', 100, 2), o('index/i', 10, 3)];
    const plan = planCopy(src, new Map([['data/ab/ab1', 100], ['data/ab/ab2', 40]]));
    assert.equal(plan.present, 1);
    assert.deepEqual(plan.phases.flatMap((p) => p.items.map((i) => [i.key, i.replace])), [['data/ab/ab2', true], ['index/i', false]]);
  });
});

describe('copyLag', () => {
  it('is 0 when caught up and the age of the oldest missing object otherwise', () => {
    const src = [
      o('wal/00000001/000000010000000000000001', 10, 1_000),
      o('wal/00000001/000000010000000000000002', 10, 5_000),
      o('wal/00000001/000000010000000000000003', 10, 8_000),
      o('snapshots/aaa', 10, 2_000),
    ];
    const all = new Map(src.map((x) => [x.key, x.size]));
    const caughtUp = copyLag(src, all, 10_000);
    assert.equal(caughtUp.wal.lagSeconds, 0);
    assert.equal(caughtUp.snapshot.lagSeconds, 0);
    assert.equal(caughtUp.wal.newestSource, '000000010000000000000003');
    const behind = copyLag(src, new Map([[src[0].key, 10]]), 10_000);
    assert.deepEqual(
      { missing: behind.wal.missing, lag: behind.wal.lagSeconds, newest: behind.wal.newestMissingAgeSeconds, name: behind.wal.newestMissing },
      { missing: 2, lag: 5, newest: 2, name: '000000010000000000000003' },
    );
    assert.equal(behind.snapshot.lagSeconds, 8);
    const partial = copyLag(src, new Map([...all, [src[3].key, 3]]), 10_000);
    assert.equal(partial.snapshot.missing, 1, 'a destination object of another size is not copied yet');
  });
});

describe('status', () => {
  it('finds the newest WAL segment by name, not by history files', () => {
    const w = newestWal([o('wal/00000001/000000010000000000000009', 1, 9), o('wal/00000002/000000020000000000000004', 1, 5), o('wal/00000002/00000002.history', 1, 10)]);
    assert.equal(w?.key, 'wal/00000002/000000020000000000000004');
  });

  it('writes the lag as Prometheus gauges', () => {
    const lag = { missing: 2, lagSeconds: 3.5, newestMissingAgeSeconds: 1 };
    const s: RepoStatus = {
      location: '/r',
      repositoryId: 'x',
      snapshots: { total: 2, byKind: { postgres: 2 } },
      wal: { objects: 3 },
      copy: { destination: 's3://b/p', initialized: true, snapshots: 1, walObjects: 1, lag: { wal: lag, snapshot: { missing: 0, lagSeconds: 0, newestMissingAgeSeconds: 0 } } },
    };
    const text = metricsText(s);
    assert.match(text, /^# TYPE ferry_copy_lag_seconds gauge$/m);
    assert.match(text, /^ferry_copy_lag_seconds\{repository="\/r",destination="s3:\/\/b\/p",kind="wal"\} 3\.500$/m);
    assert.match(text, /^ferry_copy_lag_seconds\{.*kind="snapshot"\} 0$/m);
    assert.match(text, /^ferry_snapshots\{repository="\/r",kind="postgres"\} 2$/m);
  });
});
