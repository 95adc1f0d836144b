/**
 * `pg verify` (src/postgres/verify.ts) as tables over a model archive, and the
 * `ferry expire` / `ferry pg verify` commands end to end on a fabricated
 * repository (manifests written through the repository API, fake WAL objects:
 * both commands judge segments by name and size only; history files are sealed
 * with the WAL module's own code).
 *
 * The model archive: one segment an hour, segment s stored at NOW - (240 - s) hours.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { verifyArchive, type VerifyInput } from '../../src/postgres/verify.ts';
import { archivedWal, type ArchivedWal, type HistoryState, type PgSnapshotPoint } from '../../src/postgres/walretention.ts';
import { segmentName } from '../../src/postgres/walname.ts';
import { pushWal } from '../../src/postgres/wal.ts';
import { Repository } from '../../src/repo/repository.ts';
import { listSnapshots, writeManifest, type Manifest } from '../../src/repo/manifest.ts';
import { listAll } from '../../src/storage/types.ts';
import { FsStorage } from '../../src/storage/fs.ts';
import { newKeyFileText, readKeyFile } from '../../src/codec/keys.ts';
import { Context } from '../../src/cli/context.ts';
import { GLOBAL_OPTIONS, type Command } from '../../src/cli/command.ts';
import { expireCommand } from '../../src/cli/expire.ts';
import { pgVerifyCommand } from '../../src/cli/pgverify.ts';
import type { FerryFile } from '../../src/config/schema.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { FerryError } from '../../src/util/errors.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';

const SEG = 16 * 1024 * 1024;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 2, 1, 0, 0);
const at = (s: number) => NOW - (240 - s) * HOUR;
const tliHex = (t: number) => t.toString(16).toUpperCase().padStart(8, '0');
const switchAt = (s: number) => BigInt(s) * BigInt(SEG) + 0x1000n;

function seg(tli: number, s: number, time = at(s), suffix = ''): ArchivedWal {
  return archivedWal(`wal/${tliHex(tli)}/${segmentName(tli, BigInt(s), SEG)}${suffix}`, 1000, time, SEG);
}
function segs(tli: number, from: number, to: number, skip: number[] = []): ArchivedWal[] {
  const out: ArchivedWal[] = [];
  for (let s = from; s <= to; s++) if (!skip.includes(s)) out.push(seg(tli, s));
  return out;
}
function hist(tli: number, time: number): ArchivedWal {
  return archivedWal(`wal/${tliHex(tli)}/${tliHex(tli)}.history`, 60, time, SEG);
}
function snap(id: string, tli: number, start: number, stop: number): PgSnapshotPoint {
  return { id, asset: 'main', timeline: tli, startSegno: BigInt(start), stopSegno: BigInt(stop), startLsn: BigInt(start) * BigInt(SEG) + 0x28n, stopLsn: BigInt(stop) * BigInt(SEG) + 0x100n, stopTime: at(stop), kept: true };
}
function daily(tli: number, from: number, to: number): PgSnapshotPoint[] {
  const out: PgSnapshotPoint[] = [];
  for (let k = from; k <= to; k++) out.push(snap(`k${k}`, tli, 24 * k + 3, 24 * k + 4));
  return out;
}
function histories(spec: Record<number, [parent: number, switchSeg: number][]>): Map<number, HistoryState> {
  const m = new Map<number, HistoryState>();
  for (const [t, entries] of Object.entries(spec)) m.set(Number(t), entries.map(([p, s]) => ({ timeline: p, switchLsn: switchAt(s), reason: 'test' })));
  return m;
}
function verify(input: Omit<VerifyInput, 'segmentSize'>) {
  return verifyArchive({ segmentSize: SEG, ...input });
}

describe('verifyArchive', () => {
  it('a complete single-timeline archive: no problems, one window from the oldest snapshot to the newest segment', () => {
    const r = verify({ snapshots: daily(1, 0, 9), objects: segs(1, 1, 240), histories: new Map() });
    assert.equal(r.ok, true, r.problems.map((p) => p.message).join('\n'));
    assert.equal(r.snapshots.length, 10);
    assert.ok(r.snapshots.every((s) => s.consistent));
    const t1 = r.timelines.find((t) => t.timeline === 1)!;
    assert.equal(t1.history, 'not needed');
    assert.equal(t1.segments, 240);
    assert.equal(t1.anchor, 'k0');
    assert.deepEqual(t1.windows, [
      {
        from: { snapshot: 'k0', timeline: 1, lsn: '0/4000100', time: new Date(at(4)).toISOString() },
        to: { timeline: 1, segment: segmentName(1, 240n, SEG), lsn: '0/F1000000', time: new Date(at(240)).toISOString() },
      },
    ]);
  });

  const table: { name: string; input: Omit<VerifyInput, 'segmentSize'>; problems: RegExp[]; windows?: Record<number, [from: string, toSeg: number][]> }[] = [
    {
      name: "a snapshot's own WAL missing (and the gap it leaves on the path)",
      input: { snapshots: daily(1, 0, 9), objects: segs(1, 1, 240, [28]), histories: new Map() },
      problems: [/^snapshot k1 \(main, .*\) cannot be made consistent: WAL 00000001000000000000001C is not archived \(1 of 2 segments\)$/, /^timeline 1: WAL 00000001000000000000001C is not archived \(1 segment\); replay from earlier snapshots stops at 0\/1C000000$/],
      windows: { 1: [['k0', 27], ['k2', 240]] },
    },
    {
      name: 'a gap between snapshots splits the window',
      input: { snapshots: daily(1, 0, 9), objects: segs(1, 1, 240, [60, 61, 62]), histories: new Map() },
      problems: [/^timeline 1: WAL 00000001000000000000003C\.\.00000001000000000000003E is not archived \(3 segments\)/],
      windows: { 1: [['k0', 59], ['k3', 240]] },
    },
    {
      name: 'WAL before the oldest snapshot may be missing',
      input: { snapshots: daily(1, 2, 9), objects: segs(1, 40, 240), histories: new Map() },
      problems: [],
      windows: { 1: [['k2', 240]] },
    },
    {
      name: 'with a PITR window, gaps before its base are restore points only, not problems',
      input: { snapshots: daily(1, 0, 9), objects: [...segs(1, 3, 4), ...segs(1, 27, 28), ...segs(1, 51, 240)], histories: new Map(), windowStart: NOW - 7 * DAY },
      problems: [],
      windows: { 1: [['k0', 4], ['k1', 28], ['k2', 240]] },
    },
    {
      name: 'with a PITR window, a gap after its base is a problem',
      input: { snapshots: daily(1, 0, 9), objects: segs(1, 1, 240, [110]), histories: new Map(), windowStart: NOW - 7 * DAY },
      problems: [/^timeline 1: WAL 00000001000000000000006E is not archived/],
    },
    {
      name: 'a timeline switch is followed: timeline 2 inherits the window of snapshots on timeline 1',
      input: {
        snapshots: [...daily(1, 0, 6), ...daily(2, 7, 9)],
        objects: [...segs(1, 1, 149), seg(1, 150, at(150), '.partial'), hist(2, at(150)), ...segs(2, 150, 240)],
        histories: histories({ 2: [[1, 150]] }),
      },
      problems: [],
      windows: { 1: [['k0', 149]], 2: [['k0', 240]] },
    },
    {
      name: 'the switch segment must come from the new timeline (the old one only has a .partial)',
      input: {
        snapshots: [...daily(1, 0, 6), ...daily(2, 7, 9)],
        objects: [...segs(1, 1, 149), seg(1, 150, at(150), '.partial'), hist(2, at(150)), ...segs(2, 151, 240)],
        histories: histories({ 2: [[1, 150]] }),
      },
      problems: [/^timeline 2: WAL 000000020000000000000096 is not archived \(1 segment\); replay from earlier snapshots stops at 0\/96000000$/],
      windows: { 1: [['k0', 149]], 2: [['k0', 149], ['k7', 240]] },
    },
    {
      name: "a gap on the parent before the switch breaks the child's path too",
      input: {
        snapshots: [...daily(1, 0, 6), ...daily(2, 7, 9)],
        objects: [...segs(1, 1, 149, [120]), hist(2, at(150)), ...segs(2, 150, 240)],
        histories: histories({ 2: [[1, 150]] }),
      },
      problems: [/^timeline 1: WAL 000000010000000000000078 is not archived/],
      windows: { 2: [['k0', 119], ['k5', 240]] },
    },
    {
      name: 'a timeline without its history file is a problem (and is checked on its own)',
      input: { snapshots: [...daily(1, 0, 6), ...daily(2, 7, 9)], objects: [...segs(1, 1, 149), ...segs(2, 150, 240)], histories: new Map() },
      problems: [/^timeline 2: history file 00000002\.history is not archived, so its switch from an earlier timeline cannot be followed$/],
      windows: { 2: [['k7', 240]] },
    },
    {
      name: 'an unreadable history file is a problem',
      input: { snapshots: daily(1, 0, 6), objects: [...segs(1, 1, 149), hist(2, at(150)), ...segs(2, 150, 240)], histories: new Map([[2, { error: 'WAL object failed authentication' }]]) },
      problems: [/^timeline 2: history file 00000002\.history cannot be read: WAL object failed authentication/],
    },
    {
      name: 'a snapshot without WAL positions is a problem',
      input: { snapshots: daily(1, 0, 1), unusable: [{ id: 'bad', kept: true, why: 'no startWal/stopWal' }], objects: segs(1, 1, 60), histories: new Map() },
      problems: [/^snapshot bad has no usable WAL positions in its metadata \(no startWal\/stopWal\)$/],
    },
    {
      name: 'no snapshots: nothing to check, no problems',
      input: { snapshots: [], objects: segs(1, 1, 10), histories: new Map() },
      problems: [],
    },
  ];
  for (const t of table) {
    it(t.name, () => {
      const r = verify(t.input);
      const msgs = r.problems.map((p) => p.message);
      assert.equal(msgs.length, t.problems.length, `problems:\n${msgs.join('\n')}`);
      t.problems.forEach((re, i) => assert.match(msgs[i], re));
      assert.equal(r.ok, t.problems.length === 0);
      for (const [tl, want] of Object.entries(t.windows ?? {})) {
        const got = r.timelines.find((x) => x.timeline === Number(tl))!.windows.map((w) => [w.from.snapshot, w.to.segment]);
        assert.deepEqual(
          got,
          want.map(([from, s]) => [from, segmentName(Number(tl), BigInt(s), SEG)]).map(([from, name], i) => {
            // a window on timeline 2 may end on timeline 1 (before the switch)
            const g = got[i];
            return g && g[1].slice(8) === (name as string).slice(8) ? [from, g[1]] : [from, name];
          }),
          `windows of timeline ${tl}`,
        );
      }
    });
  }

  it('reports the parent and switch point of a timeline, and notes objects that are not WAL', () => {
    const r = verify({
      snapshots: daily(1, 0, 1),
      objects: [...segs(1, 1, 49), hist(2, at(50)), ...segs(2, 50, 60), archivedWal('wal/00000001/stray.tmp', 3, 0, SEG)],
      histories: histories({ 2: [[1, 50]] }),
    });
    const t2 = r.timelines.find((t) => t.timeline === 2)!;
    assert.equal(t2.parent, 1);
    assert.equal(t2.switchLsn, '0/32001000');
    assert.equal(t2.history, 'archived');
    assert.match(r.notes.join('\n'), /1 object\(s\) under wal\/ are not WAL files .*wal\/00000001\/stray\.tmp/);
    assert.equal(r.ok, true);
  });

  it('notes WAL that no snapshot precedes', () => {
    const r = verify({ snapshots: [], objects: segs(1, 1, 5), histories: new Map() });
    assert.match(r.notes.join('\n'), /timeline 1: WAL is archived but no consistent snapshot precedes it/);
  });
});

// ---- the commands, in process ------------------------------------------------------------

const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));

interface Fixture {
  dir: TempDir;
  repo: Repository;
  storage: FsStorage;
  keyFile: string;
  repoPath: string;
}

function pgManifest(k: number, tli: number, labels: string[] = []): Manifest {
  const start = 24 * k + 3;
  const stop = 24 * k + 4;
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    version: 1,
    kind: 'postgres',
    asset: 'main',
    host: 'db1',
    paths: ['/var/lib/postgresql/15/main'],
    labels,
    startTime: iso(at(start)),
    endTime: iso(at(stop)),
    tree: [],
    stats: { files: 0, dirs: 0, symlinks: 0, bytes: 0, filesRead: 0, filesUnchanged: 0, newBlobs: 0, newBytes: 0, storedBytes: 0, durationMs: 0 },
    meta: {
      systemIdentifier: '7301234567890123456',
      serverVersion: 150008,
      timeline: tli,
      walSegmentSize: SEG,
      startLsn: `0/${(start * SEG + 0x28).toString(16).toUpperCase()}`,
      stopLsn: `0/${(stop * SEG + 0x100).toString(16).toUpperCase()}`,
      startWal: segmentName(tli, BigInt(start), SEG),
      stopWal: segmentName(tli, BigInt(stop), SEG),
      startTime: iso(at(start)),
      stopTime: iso(at(stop)),
      backupLabel: '',
      tablespaceMap: '',
      tablespaces: [],
      dataChecksums: true,
      checksumFailures: [],
      dataDirectory: '/var/lib/postgresql/15/main',
    },
  };
}

/** Ten daily PostgreSQL snapshots (the last three on timeline 2 after a switch at segment 150), WAL 1..240, one files snapshot. */
async function fixture(): Promise<Fixture> {
  const dir = makeTempDir('ferry-expire-');
  cleanups.push(dir.cleanup);
  const keyFile = join(dir.path, 'key');
  await writeFile(keyFile, newKeyFileText(), { mode: 0o600 });
  const repoPath = join(dir.path, 'repo');
  const storage = new FsStorage(repoPath);
  const repo = await Repository.init(storage, readKeyFile(keyFile));
  for (let k = 0; k <= 9; k++) await writeManifest(repo, pgManifest(k, k <= 6 ? 1 : 2, k === 1 ? ['before-migration'] : []));
  const files = pgManifest(0, 1);
  await writeManifest(repo, { ...files, kind: 'files', asset: 'uploads', meta: undefined, endTime: new Date(NOW - 40 * DAY).toISOString() });
  const put = async (key: string, data: Buffer, time: number) => {
    await storage.put(key, data);
    await utimes(join(repoPath, key), time / 1000, time / 1000);
  };
  for (let s = 1; s <= 149; s++) await put(`wal/00000001/${segmentName(1, BigInt(s), SEG)}`, Buffer.alloc(100, s), at(s));
  await put(`wal/00000001/${segmentName(1, 150n, SEG)}.partial`, Buffer.alloc(100), at(150));
  for (let s = 150; s <= 240; s++) await put(`wal/00000002/${segmentName(2, BigInt(s), SEG)}`, Buffer.alloc(100, s), at(s));
  await pushWal(repo, '00000002.history', Buffer.from(`1\t0/${switchAt(150).toString(16).toUpperCase()}\tno recovery target specified\n`));
  await utimes(join(repoPath, 'wal/00000002/00000002.history'), at(150) / 1000, at(150) / 1000);
  return { dir, repo, storage, keyFile, repoPath };
}

interface RunResult {
  code: number;
  stdout: string;
  error?: FerryError;
}

/** Runs a command as main.ts does (parse, Context, run, error → exit code), capturing stdout. */
async function run(f: Fixture, cmd: Command, argv: string[], opts: { env?: Record<string, string>; file?: FerryFile; now?: number } = {}): Promise<RunResult> {
  const parsed = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...(cmd.options ?? {}) }, allowPositionals: true, strict: true });
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const ctx = new Context(
    { file: opts.file ?? {}, repoUrl: f.repoPath, keyFile: f.keyFile },
    { json: !!values.json, quiet: false, verbose: false },
    { ...(opts.env ?? {}) },
    new ManualClock(opts.now ?? NOW),
  );
  let stdout = '';
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = (await cmd.run(ctx, { values, positionals: parsed.positionals })) ?? 0;
    return { code, stdout };
  } catch (e) {
    if (e instanceof FerryError) return { code: e.exitCode, stdout, error: e };
    throw e;
  } finally {
    process.stdout.write = write;
    await ctx.close();
  }
}

async function walKeys(f: Fixture): Promise<string[]> {
  const out: string[] = [];
  for await (const o of listAll(f.storage, 'wal/')) out.push(o.key);
  return out.sort();
}

describe('ferry pg verify', () => {
  it('passes on a complete archive across a timeline switch, with the windows in JSON and text', async () => {
    const f = await fixture();
    const r = await run(f, pgVerifyCommand, ['--json']);
    assert.equal(r.code, 0, r.stdout);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.ok, true);
    assert.equal(rep.snapshots.length, 10);
    const t2 = rep.timelines.find((t: { timeline: number }) => t.timeline === 2);
    assert.equal(t2.parent, 1);
    assert.equal(t2.history, 'archived');
    assert.equal(t2.windows.length, 1);
    assert.equal(t2.windows[0].to.segment, segmentName(2, 240n, SEG));
    const text = await run(f, pgVerifyCommand, []);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /timeline 2: recoverable from .* \(LSN 0\/4000100, snapshot [0-9a-f]{12} on timeline 1\) to the end of 0000000200000000000000F0 \(LSN 0\/F1000000, archived 2026-03-01T00:00:00Z\)/);
    assert.match(text.stdout, /WAL archive complete: no problems found/);
  });

  it('exits 1 with one line per problem when WAL is missing', async () => {
    const f = await fixture();
    await f.storage.delete(`wal/00000001/${segmentName(1, 110n, SEG)}`);
    await f.storage.delete(`wal/00000002/${segmentName(2, 171n, SEG)}`);
    const r = await run(f, pgVerifyCommand, []);
    assert.equal(r.code, 1);
    const problems = r.stdout.split('\n').filter((l) => l.startsWith('problem: '));
    assert.equal(problems.length, 3, r.stdout);
    assert.match(problems.join('\n'), /snapshot [0-9a-f]{12} \(main, .*\) cannot be made consistent: WAL 0000000200000000000000AB is not archived/);
    assert.match(problems.join('\n'), /timeline 1: WAL 00000001000000000000006E is not archived \(1 segment\); replay from earlier snapshots stops at 0\/6E000000/);
    assert.match(problems.join('\n'), /timeline 2: WAL 0000000200000000000000AB is not archived/);
    assert.match(r.error!.message, /has 3 problem\(s\)/);
    const j = await run(f, pgVerifyCommand, ['--json']);
    assert.equal(j.code, 1);
    assert.equal(JSON.parse(j.stdout).ok, false);
  });
});

describe('ferry expire', () => {
  const flags = ['--keep-within', '5d', '--keep-label', 'before-migration', '--wal-keep-within', '2d'];

  it('--dry-run lists snapshots and WAL ranges and removes nothing', async () => {
    const f = await fixture();
    const before = await walKeys(f);
    const r = await run(f, expireCommand, [...flags, '--dry-run', '--json']);
    assert.equal(r.code, 0);
    const plan = JSON.parse(r.stdout);
    assert.equal(plan.dryRun, true);
    assert.equal(plan.done, false);
    // 10 daily snapshots 0..9 (k stopped 236 - 24k hours ago): within 5d are k5..k9, k1 is labelled, the files snapshot is its group's newest
    assert.equal(plan.snapshots.remove.length, 4);
    assert.ok(plan.wal.remove.count > 0);
    assert.deepEqual(
      plan.wal.remove.timelines.map((t: { timeline: number }) => t.timeline),
      [1, 2],
    );
    assert.equal(plan.wal.remove.timelines[0].first, segmentName(1, 1n, SEG));
    // Timeline 1 ended (switch at segment 150) before the 2-day window: only kept snapshots' own WAL stays there;
    // timeline 2 keeps everything from the window's base (the snapshot at segments 171-172) on.
    assert.equal(plan.wal.remove.timelines[0].last, `${segmentName(1, 150n, SEG)}.partial`);
    assert.deepEqual(plan.wal.remove.timelines[1], { timeline: 2, first: segmentName(2, 150n, SEG), last: segmentName(2, 170n, SEG), count: 21, bytes: 2100 });
    assert.deepEqual(await walKeys(f), before);
    assert.equal((await listSnapshots(f.repo)).length, 11);
    const text = await run(f, expireCommand, [...flags, '--dry-run']);
    assert.match(text.stdout, /snapshots: 7 kept, 4 to remove/);
    assert.match(text.stdout, /timeline 1: 000000010000000000000001\.\.\S+ {2}\d+ file\(s\)/);
    assert.match(text.stdout, /dry run: would remove 4 snapshot\(s\) and \d+ WAL file\(s\)/);
  });

  it('refuses without --yes when there is no terminal (exit 2), removing nothing', async () => {
    const f = await fixture();
    const before = await walKeys(f);
    const r = await run(f, expireCommand, flags);
    assert.equal(r.code, 2);
    assert.match(r.error!.message, /would remove 4 snapshot\(s\) and \d+ WAL file\(s\) .* but was not told to/);
    assert.match(r.error!.hint!, /pass --yes to remove them, or --dry-run to only list them/);
    assert.match(r.stdout, /snapshots: 7 kept, 4 to remove/, 'the plan is shown before refusing');
    assert.deepEqual(await walKeys(f), before);
    assert.equal((await listSnapshots(f.repo)).length, 11);
  });

  it('--yes forgets snapshots and deletes WAL; the archive still verifies with the same window, and --prune runs', async () => {
    const f = await fixture();
    const dry = JSON.parse((await run(f, expireCommand, [...flags, '--dry-run', '--json'])).stdout);
    const r = await run(f, expireCommand, [...flags, '--yes', '--prune', '--json']);
    assert.equal(r.code, 0, r.error?.message);
    const out = JSON.parse(r.stdout);
    assert.equal(out.done, true);
    assert.deepEqual([...out.forgotten].sort(), dry.snapshots.remove.map((x: { id: string }) => x.id).sort());
    assert.equal(out.walDeleted, dry.wal.remove.count);
    assert.ok(out.prune, 'prune ran');
    assert.equal((await listSnapshots(f.repo)).length, 7);
    assert.equal((await walKeys(f)).length, 240 + 1 + 1 - dry.wal.remove.count);
    const v = await run(f, pgVerifyCommand, ['--wal-keep-within', '2d', '--json']);
    assert.equal(v.code, 0, v.stdout);
    // Without the window, the expired WAL between older snapshots shows as gaps.
    const strict = await run(f, pgVerifyCommand, ['--json']);
    assert.equal(strict.code, 1);
    // A second run finds nothing more to do.
    const again = JSON.parse((await run(f, expireCommand, [...flags, '--yes', '--json'])).stdout);
    assert.equal(again.snapshots.remove.length, 0);
    assert.equal(again.wal.remove.count, 0);
  });

  it('reads the policy from ferry.yaml, and flags override it', async () => {
    const f = await fixture();
    const file: FerryFile = { policy: { retention: { keep_within: '30d', wal_keep_within: '7d' } } };
    const fromFile = JSON.parse((await run(f, expireCommand, ['--dry-run', '--json'], { file })).stdout);
    assert.equal(fromFile.policy, 'keep-within 30d');
    assert.equal(fromFile.snapshots.remove.length, 0);
    assert.equal(fromFile.wal.keepWithin, '7d');
    const overridden = JSON.parse((await run(f, expireCommand, ['--keep-within', '2d', '--dry-run', '--json'], { file })).stdout);
    assert.equal(overridden.policy, 'keep-within 2d');
    assert.ok(overridden.snapshots.remove.length > 0);
    // The window base (newest snapshot consistent 7 days ago) survives a policy that would drop it.
    assert.ok(overridden.snapshots.keep.some((k: { reasons: string[] }) => k.reasons.some((x) => x.startsWith('PITR base'))));
    const bad = await run(f, expireCommand, ['--dry-run'], { file: { policy: { retention: { keep_withn: '30d' } } } });
    assert.equal(bad.code, 2);
    assert.match(bad.error!.message, /unknown retention rule "keep_withn"/);
  });

  it('refuses to run with no policy, and rejects bad flag values, with exit 2', async () => {
    const f = await fixture();
    assert.equal((await run(f, expireCommand, ['--dry-run'])).code, 2);
    const m = await run(f, expireCommand, ['--keep-within', '6m', '--dry-run']);
    assert.equal(m.code, 2);
    assert.match(m.error!.message, /--keep-within "6m" is not a duration/);
    assert.equal((await run(f, expireCommand, ['--keep-last', 'x', '--dry-run'])).code, 2);
    assert.equal((await run(f, expireCommand, ['--keep-last', '1', '--dry-run', '--yes'])).code, 2);
  });

  it('takes "now" from the injected clock, and FERRY_NOW moves it', async () => {
    const f = await fixture();
    const plain = JSON.parse((await run(f, expireCommand, ['--keep-within', '5d', '--dry-run', '--json'])).stdout);
    assert.equal(plain.now, new Date(NOW).toISOString());
    const later = JSON.parse((await run(f, expireCommand, ['--keep-within', '5d', '--dry-run', '--json'], { env: { FERRY_NOW: '2026-03-04T00:00:00Z' } })).stdout);
    assert.equal(later.now, '2026-03-04T00:00:00.000Z');
    assert.ok(later.snapshots.remove.length > plain.snapshots.remove.length);
    assert.equal((await run(f, expireCommand, ['--keep-within', '5d', '--dry-run'], { env: { FERRY_NOW: 'soon' } })).code, 2);
  });
});
