/**
 * `ferry wal push|fetch|list` against real PostgreSQL 15: archive_command under
 * pgbench load (every segment fetchable and byte-identical to a second archive
 * made by `cp` in the same archive_command), duplicate and conflicting pushes,
 * missing names, `.partial` and history files, input validation, and SIGKILL
 * in the middle of a push (durability rule 1). Also the pure helpers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY, ferry, ferryOk } from '../harness/cli.ts';
import { runUntilPoint } from '../harness/kill.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';
import { chownToPostgres, makeTempDir, type TempDir } from '../harness/tmp.ts';
import { checkWalFile, contentEnd, covers, fetchWal, fetchWalTo, pushWal, pushWalFile, readLongPageHeader, sealWal, SLICE, unsealWal, unsealWalToFile, walAad } from '../../src/postgres/wal.ts';
import { walKey } from '../../src/postgres/walname.ts';
import { tempRepo } from '../harness/repo.ts';
import { IntegrityError } from '../../src/util/errors.ts';
import { waitArchived } from '../harness/archive.ts';

const SEG = 16 << 20;
let tmp: TempDir;
let cluster: TestCluster;
let repo: string;
let keyFile: string;
let copies: string;
let env: Record<string, string>;
/** Names archived by the cluster (from the cp archive). */
let archived: string[] = [];

/** A made-up segment with no page header: passes validation under any segment name. */
function fakeSegment(size = SEG): Buffer {
  const b = randomBytes(size);
  b.fill(0, 0, 64);
  return b;
}


before(async () => {
  tmp = makeTempDir('ferry-wal-', { forPostgres: true });
  repo = join(tmp.path, 'repo');
  keyFile = join(tmp.path, 'ferry.key');
  copies = join(tmp.path, 'copies');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  mkdirSync(copies);
  await chownToPostgres(tmp.path);
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile };
  // Ferry first, then a plain copy: the copy exists only for files Ferry acknowledged.
  const cmd = `${process.execPath} ${FERRY} wal push %p && cp %p ${copies}/%f`;
  cluster = await startCluster({ conf: ['archive_mode = on', `archive_command = '${cmd}'`, 'wal_keep_size = 1GB'], env });
});

after(async () => {
  await cluster?.destroy();
  tmp?.cleanup();
});

describe('wal push as archive_command', () => {
  it('archives every segment under pgbench load; each fetches back byte-identical', async () => {
    await cluster.pgbench(['-i', '-s', '5', '-q']);
    await cluster.pgbench(['-c', '2', '-T', '5', '-n']);
    const [{ name }] = await cluster.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
    await waitArchived(cluster, name);
    const [st] = await cluster.query<{ fc: string }>('SELECT failed_count AS fc FROM pg_stat_archiver');
    assert.equal(Number(st.fc), 0, 'no archive_command failed');

    archived = readdirSync(copies).sort();
    assert.ok(archived.length >= 5, `expected several segments, got ${archived.join(' ')}`);
    assert.ok(archived.includes(name));
    const listed = JSON.parse((await ferryOk(['wal', 'list', '--json'], { env })).stdout) as { name: string; size: number; kind: string }[];
    assert.deepEqual(
      listed.map((l) => l.name),
      archived,
    );
    for (const l of listed) assert.ok(l.size > 0 && l.size < SEG, `${l.name} is stored compressed (${l.size} bytes)`);

    const out = join(tmp.path, 'fetched');
    mkdirSync(out);
    for (const n of archived) {
      await ferryOk(['wal', 'fetch', n, join(out, 'RECOVERYXLOG')], { env });
      const got = readFileSync(join(out, 'RECOVERYXLOG'));
      assert.ok(got.equals(readFileSync(join(copies, n))), `${n} differs from the cp archive`);
      const inPgWal = join(cluster.dataDir, 'pg_wal', n);
      if (existsSync(inPgWal)) assert.ok(got.equals(readFileSync(inPgWal)), `${n} differs from pg_wal`);
    }
    assert.deepEqual(readdirSync(out), ['RECOVERYXLOG'], 'no temp files left beside DEST');
  });

  it('a duplicate push with the same content exits 0 with a warning', async () => {
    const n = archived[1];
    const r = await ferry(['wal', 'push', join(copies, n)], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: .*already archived .*same content/);
  });

  it('a push of different content under an archived name exits 1 and leaves the archive alone', async () => {
    const n = archived[1];
    const dir = join(tmp.path, 'evil');
    mkdirSync(dir);
    const bad = Buffer.from(readFileSync(join(copies, n)));
    bad[SEG - 100] ^= 0xff;
    writeFileSync(join(dir, n), bad);
    const r = await ferry(['wal', 'push', join(dir, n)], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /error: WAL file .* already archived .* DIFFERENT content/);
    const back = join(dir, 'back');
    await ferryOk(['wal', 'fetch', n, back], { env });
    assert.ok(readFileSync(back).equals(readFileSync(join(copies, n))), 'the archived copy is unchanged');
  });

  it('wal fetch of a missing name exits 1 with one line and writes nothing', async () => {
    const dest = join(tmp.path, 'missing-dest');
    const t = Date.now();
    const r = await ferry(['wal', 'fetch', '0000000100000000000000FE', dest], { env });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /0000000100000000000000FE is not in the repository .*end of recovery/);
    assert.ok(!existsSync(dest));
    assert.ok(Date.now() - t < 10_000);
  });

  it('wal fetch with a wrong key fails as a key error, not as a missing file', async () => {
    const other = join(tmp.path, 'other.key');
    await ferryOk(['init', '--key-file', other], { env: { FERRY_REPO: join(tmp.path, 'repo-other') } });
    const r = await ferry(['wal', 'fetch', archived[0], join(tmp.path, 'x')], { env: { ...env, FERRY_KEY_FILE: other } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /wrong key file/);
  });
});

describe('wal push and fetch outside PostgreSQL', () => {
  let env2: Record<string, string>;
  let dir: string;
  before(async () => {
    dir = join(tmp.path, 'solo');
    mkdirSync(dir);
    env2 = { FERRY_REPO: join(dir, 'repo'), FERRY_KEY_FILE: keyFile };
    await ferryOk(['init'], { env: env2 });
  });

  it('stores .partial under its own name; fetching the segment name does not return it', async () => {
    const name = '000000010000000000000040';
    const p = join(dir, `${name}.partial`);
    const data = Buffer.alloc(1 << 20);
    randomBytes(3000).copy(data, 40);
    writeFileSync(p, data);
    await ferryOk(['wal', 'push', p], { env: env2 });
    const r = await ferry(['wal', 'fetch', name, join(dir, 'out')], { env: env2 });
    assert.equal(r.code, 1, 'the segment itself is not archived');
    await ferryOk(['wal', 'fetch', `${name}.partial`, join(dir, 'out')], { env: env2 });
    assert.ok(readFileSync(join(dir, 'out')).equals(data));

    // A longer .partial (the same bytes and more) replaces it; a shorter one is already covered.
    const longer = Buffer.from(data);
    randomBytes(5000).copy(longer, 3040);
    writeFileSync(p, longer);
    const r2 = await ferryOk(['wal', 'push', p], { env: env2 });
    assert.match(r2.stderr, /replaced/);
    writeFileSync(p, data);
    const r3 = await ferryOk(['wal', 'push', p], { env: env2 });
    assert.match(r3.stderr, /already holds/);
    await ferryOk(['wal', 'fetch', `${name}.partial`, join(dir, 'out')], { env: env2 });
    assert.ok(readFileSync(join(dir, 'out')).equals(longer));
    // A .partial that disagrees with the stored one is refused.
    const other = Buffer.from(longer);
    other[100] ^= 1;
    writeFileSync(p, other);
    assert.equal((await ferry(['wal', 'push', p], { env: env2 })).code, 1);
  });

  it('archives timeline history and backup history files of any size', async () => {
    const h = join(dir, '00000002.history');
    writeFileSync(h, '1\t0/5000000\tno recovery target specified\n');
    const b = join(dir, '000000010000000000000002.00000028.backup');
    writeFileSync(b, 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n');
    await ferryOk(['wal', 'push', h], { env: env2 });
    await ferryOk(['wal', 'push', b], { env: env2 });
    await ferryOk(['wal', 'fetch', '00000002.history', join(dir, 'h')], { env: env2 });
    assert.equal(readFileSync(join(dir, 'h'), 'utf8'), readFileSync(h, 'utf8'));
    const list = JSON.parse((await ferryOk(['wal', 'list', '--timeline', '2', '--json'], { env: env2 })).stdout) as { name: string; kind: string }[];
    assert.deepEqual(list.map((l) => [l.name, l.kind]), [['00000002.history', 'history']]);
  });

  it('refuses a truncated segment and a segment under the wrong name', async () => {
    const n = archived[2];
    const trunc = join(dir, n);
    writeFileSync(trunc, readFileSync(join(copies, n)).subarray(0, 8 << 20));
    const r = await ferry(['wal', 'push', trunc], { env: env2 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /8 MiB but its page header says .* 16 MiB/);
    const wrong = archived[3];
    copyFileSync(join(copies, n), join(dir, wrong));
    const r2 = await ferry(['wal', 'push', join(dir, wrong)], { env: env2 });
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /does not hold WAL segment/);
    const odd = join(dir, '000000010000000000000050');
    writeFileSync(odd, fakeSegment(3 << 20));
    assert.equal((await ferry(['wal', 'push', odd], { env: env2 })).code, 1);
    assert.equal((await ferry(['wal', 'push', join(dir, 'not-a-wal-name')], { env: env2 })).code, 2);
    const list = JSON.parse((await ferryOk(['wal', 'list', '--json', '--timeline', '1'], { env: env2 })).stdout) as { name: string }[];
    assert.deepEqual(list.map((l) => l.name), ['000000010000000000000002.00000028.backup', '000000010000000000000040.partial']);
  });

  for (const [point, name] of [
    ['fs-put-written', '000000010000000000000060'],
    ['wal-push-stored', '000000010000000000000061'],
  ] as const) {
    it(`SIGKILL at ${point} never leaves a truncated object, and a re-push succeeds`, async () => {
      const p = join(dir, name);
      const data = fakeSegment(1 << 20);
      writeFileSync(p, data);
      await runUntilPoint(process.execPath, [FERRY, 'wal', 'push', p], { point, env: env2, timeoutMs: 60_000 });
      const out = join(dir, `out-${name}`);
      const f = await ferry(['wal', 'fetch', name, out], { env: env2 });
      if (point === 'fs-put-written') {
        assert.equal(f.code, 1, 'killed before the rename: not archived');
        assert.ok(!existsSync(out));
      } else {
        assert.equal(f.code, 0, 'killed after the rename: archived whole');
        assert.ok(readFileSync(out).equals(data));
      }
      const again = await ferry(['wal', 'push', p], { env: env2 });
      assert.equal(again.code, 0, again.stderr);
      if (point === 'wal-push-stored') assert.match(again.stderr, /same content/);
      await ferryOk(['wal', 'fetch', name, out], { env: env2 });
      assert.ok(readFileSync(out).equals(data));
      // A temp file the kill left behind is invisible to listings (FsStorage reserves `.tmp-` names).
      const list = JSON.parse((await ferryOk(['wal', 'list', '--json', '--timeline', '1'], { env: env2 })).stdout) as { name: string }[];
      assert.ok(list.every((l) => !l.name.startsWith('.')));
      assert.ok(list.some((l) => l.name === name));
    });
  }
});

describe('wal push and fetch on S3 (s3rver: no if-none-match, so stat then put)', () => {
  let s3: S3Server;
  let envS3: Record<string, string>;
  before(async () => {
    s3 = await startS3Server('ferry-wal');
    envS3 = {
      FERRY_REPO: `s3://${s3.bucket}/repo`,
      FERRY_S3_ENDPOINT: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      FERRY_KEY_FILE: keyFile,
    };
    await ferryOk(['init'], { env: envS3 });
  });
  after(async () => {
    await s3?.stop();
  });

  it('stores, refuses a different copy, accepts the same copy, fetches byte-identical, reports missing names', async () => {
    const n = archived[0];
    const seg = join(copies, n);
    await ferryOk(['wal', 'push', seg], { env: envS3 });
    const dup = await ferryOk(['wal', 'push', seg], { env: envS3 });
    assert.match(dup.stderr, /same content/);
    const dir = join(tmp.path, 's3-evil');
    mkdirSync(dir);
    const bad = Buffer.from(readFileSync(seg));
    bad[5000] ^= 1;
    writeFileSync(join(dir, n), bad);
    assert.equal((await ferry(['wal', 'push', join(dir, n)], { env: envS3 })).code, 1);
    const out = join(dir, 'out');
    await ferryOk(['wal', 'fetch', n, out], { env: envS3 });
    assert.ok(readFileSync(out).equals(readFileSync(seg)));
    const missing = await ferry(['wal', 'fetch', archived[1], out], { env: envS3 });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not in the repository/);
  });
});

describe('WAL files in slices (pushWalFile, fetchWalTo)', () => {
  /** A segment-sized file whose content compresses like WAL: runs of zeros and of random bytes. */
  function walLike(size: number): Buffer {
    const b = Buffer.alloc(size);
    for (let o = 64; o < size; o += 8192) randomBytes(1500).copy(b, o);
    return b;
  }

  it('stores what pushWal would store, readable by both fetch paths, for sizes around the slice', async () => {
    const { repo, dir: d } = await tempRepo();
    try {
      const sizes = [SLICE - 1, SLICE, SLICE + 1, 3 * SLICE + 12345, 16 << 20];
      for (const [i, size] of sizes.entries()) {
        // Names must be segment names; odd sizes only pass as .partial files.
        const name = `0000000100000000000000${(0x20 + i).toString(16).toUpperCase()}${size === SLICE || size === 16 << 20 ? '' : '.partial'}`;
        const data = walLike(size);
        const p = join(d.path, name);
        writeFileSync(p, data);
        const r = await pushWalFile(repo, p);
        assert.equal(r.outcome, 'stored');
        assert.equal(r.bytes, size);
        assert.equal(r.storedBytes, (await repo.storage.stat(walKey(name)))!.size);
        assert.ok((await fetchWal(repo, name)).equals(data), `${name}: the whole-buffer fetch reads it`);
        const dest = join(d.path, `out-${i}`);
        assert.equal(await fetchWalTo(repo, name, dest), size);
        assert.ok(readFileSync(dest).equals(data), `${name}: the sliced fetch reads it`);
        assert.equal((await pushWalFile(repo, p)).outcome, 'duplicate');
      }
      // Objects written whole (older Ferry, wal stream) fetch through slices too.
      const old = walLike(16 << 20);
      await pushWal(repo, '000000010000000000000030', old);
      await fetchWalTo(repo, '000000010000000000000030', join(d.path, 'old'));
      assert.ok(readFileSync(join(d.path, 'old')).equals(old));
    } finally {
      d.cleanup();
    }
  });

  it('refuses a different file under a stored name, and a file that shrinks while it is read', async () => {
    const { repo, dir: d } = await tempRepo();
    try {
      const name = '000000010000000000000041';
      const p = join(d.path, name);
      const data = walLike(16 << 20);
      writeFileSync(p, data);
      await pushWalFile(repo, p);
      data[10 << 20] ^= 1;
      writeFileSync(p, data);
      await assert.rejects(pushWalFile(repo, p), /DIFFERENT content/);
      const name2 = '000000010000000000000042';
      const p2 = join(d.path, name2);
      writeFileSync(p2, walLike(16 << 20));
      const orig = readFileSync(p2);
      // Shrink the file once the push has read its first slice (the later ones are read as the write pulls them).
      const storage = repo.storage;
      const putStream = storage.putStream.bind(storage);
      storage.putStream = async (key, body, opts) => {
        truncateSync(p2, 4 << 20);
        return putStream(key, body, opts);
      };
      await assert.rejects(pushWalFile(repo, p2), IntegrityError);
      storage.putStream = putStream;
      assert.equal(await storage.stat(walKey(name2)), undefined, 'nothing stored');
      writeFileSync(p2, orig);
      assert.equal((await pushWalFile(repo, p2)).outcome, 'stored');
    } finally {
      d.cleanup();
    }
  });

  it('a damaged object fails authentication and leaves neither DEST nor a temp file', async () => {
    const { repo, dir: d } = await tempRepo();
    try {
      const name = '000000010000000000000043';
      const data = walLike(16 << 20);
      const sealed = sealWal(repo.key, name, data);
      const out = join(d.path, 'out');
      mkdirSync(out);
      for (const at of [1, 20, sealed.length >> 1, sealed.length - 1]) {
        const bad = Buffer.from(sealed);
        bad[at] ^= 0x40;
        assert.throws(() => unsealWalToFile(repo.key, name, bad, 'the object', join(out, 'RECOVERYXLOG')), IntegrityError);
        assert.deepEqual(readdirSync(out), []);
      }
      assert.throws(() => unsealWalToFile(repo.key, '000000010000000000000044', sealed, 'the object', join(out, 'RECOVERYXLOG')), IntegrityError, 'bound to its name');
      assert.equal(unsealWalToFile(repo.key, name, sealed, 'the object', join(out, 'RECOVERYXLOG')), data.length);
      assert.ok(readFileSync(join(out, 'RECOVERYXLOG')).equals(data));
    } finally {
      d.cleanup();
    }
  });
});

describe('wal object codec', () => {
  const key = { enc: randomBytes(32), mac: randomBytes(32) };

  it('binds an object to its name', async () => {
    const plain = fakeSegment(1 << 20);
    const sealed = sealWal(key, '000000010000000000000001', plain);
    assert.ok((await unsealWal(key, '000000010000000000000001', sealed, 'x')).equals(plain));
    await assert.rejects(unsealWal(key, '000000010000000000000002', sealed, 'x'), IntegrityError);
    await assert.rejects(unsealWal(key, '000000010000000000000001.partial', sealed, 'x'), IntegrityError);
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1] ^= 1;
    await assert.rejects(unsealWal(key, '000000010000000000000001', flipped, 'x'), IntegrityError);
    assert.equal(walAad('00000002.history', 2).toString(), 'ferry-wal-v1:00000002.history:2');
  });

  it('compresses WAL-like data and stores incompressible data as is', async () => {
    const zeros = Buffer.alloc(SEG);
    assert.ok(sealWal(key, '000000010000000000000001', zeros).length < 4096);
    const rnd = randomBytes(1 << 20);
    const s = sealWal(key, '000000010000000000000001', rnd);
    assert.equal(s[0], 0x01);
    assert.equal(s.length, rnd.length + 29);
  });

  it('reads the long page header of a real segment and checks names', () => {
    const n = archived[0];
    const seg = readFileSync(join(copies, n));
    const h = readLongPageHeader(seg);
    assert.ok(h);
    assert.equal(h.segmentSize, SEG);
    assert.equal(h.blockSize, 8192);
    assert.equal(checkWalFile(n, seg, n).kind, 'segment');
    assert.equal(readLongPageHeader(Buffer.alloc(SEG)), undefined);
  });

  it('covers: a zero-padded .partial extends another when it agrees up to its last non-zero byte', () => {
    const a = Buffer.alloc(1024);
    a.write('hello', 10);
    const b = Buffer.from(a);
    b.write('world', 500);
    assert.equal(contentEnd(a), 15);
    assert.equal(contentEnd(Buffer.alloc(100)), 0);
    assert.ok(covers(b, a));
    assert.ok(!covers(a, b));
    assert.ok(covers(a, a));
    const c = Buffer.from(a);
    c[10] = 0x48;
    assert.ok(!covers(b, c));
  });
});
