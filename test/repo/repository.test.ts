import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, appendFile, mkdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Repository } from '../../src/repo/repository.ts';
import { parseConfig, signConfig } from '../../src/repo/format.ts';
import { blobIds } from '../../src/codec/hash.ts';
import { backupTree } from '../../src/repo/backup.ts';
import { restoreTree } from '../../src/repo/restore.ts';
import { checkRepository } from '../../src/repo/check.ts';
import { listSnapshots } from '../../src/repo/manifest.ts';
import { forget, prune } from '../../src/repo/prune.ts';
import { acquireLock, listLocks, removeLocks } from '../../src/repo/lock.ts';
import { FsStorage } from '../../src/storage/fs.ts';
import { ConfigError, FerryError, IntegrityError, KeyError, LockError } from '../../src/util/errors.ts';
import { makeTempDir } from '../harness/tmp.ts';
import { cred, makeAwkwardTree, tempRepo, treeDigest } from '../harness/repo.ts';

const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));

async function setup() {
  const r = await tempRepo();
  cleanups.push(r.dir.cleanup);
  const src = join(r.dir.path, 'src');
  await mkdir(src);
  await makeAwkwardTree(src, { smallFiles: 300 });
  return { ...r, src };
}

describe('repository', () => {
  it('refuses a wrong passphrase with a KeyError, and opens with the right one', async () => {
    const { storage } = await setup();
    await assert.rejects(Repository.open(storage, [{ kind: 'passphrase', passphrase: 'nope' }]), KeyError);
    await assert.rejects(Repository.open(storage, []), ConfigError);
    const repo = await Repository.open(storage, [cred]);
    assert.ok(repo.id);
  });

  it('refuses a repository written by a newer format version', async () => {
    const { storage } = await setup();
    const cfg = JSON.parse((await storage.get('config')).toString());
    cfg.version = 2;
    await storage.put('config', Buffer.from(JSON.stringify(cfg)));
    await assert.rejects(Repository.open(storage, [cred]), (e: Error) => e instanceof ConfigError && /newer than this Ferry/.test(e.message));
  });

  it('detects a tampered config', async () => {
    const { storage } = await setup();
    const cfg = JSON.parse((await storage.get('config')).toString());
    cfg.packSize = 1;
    await storage.put('config', Buffer.from(JSON.stringify(cfg)));
    await assert.rejects(Repository.open(storage, [cred]), IntegrityError);
  });

  it('names blobs with keyed BLAKE3 in new repositories and keeps HMAC-SHA-256 in repositories made before it', async () => {
    const { repo, src, dir } = await setup();
    assert.equal(repo.config.idHash, 'blake3');
    const snap = await backupTree(repo, { root: src, kind: 'files', asset: 't' });
    const someId = snap.manifest.tree[0];
    const plain = await repo.loadBlob(someId);
    assert.equal(blobIds('blake3', repo.key.mac)(plain).toString('hex'), someId);
    // A config without idHash (written before it existed), signed as such, means HMAC-SHA-256.
    const legacyStore = new FsStorage(join(dir.path, 'legacy'));
    const legacy = await Repository.init(legacyStore, cred, { idHash: 'hmac-sha256' });
    const { idHash: _, mac: __, ...rest } = legacy.config;
    await legacyStore.put('config', Buffer.from(JSON.stringify(signConfig(rest, legacy.key))));
    const reopened = await Repository.open(legacyStore, [cred]);
    assert.equal(reopened.idHash, 'hmac-sha256');
    const first = await backupTree(reopened, { root: src, kind: 'files', asset: 't' });
    assert.equal(blobIds('hmac-sha256', reopened.key.mac)(await reopened.loadBlob(first.manifest.tree[0])).toString('hex'), first.manifest.tree[0]);
    const out = join(dir.path, 'legacy-out');
    await restoreTree(reopened, first.manifest, out);
    assert.equal(await treeDigest(out), await treeDigest(src));
    assert.equal((await checkRepository(reopened, { readData: true })).ok, true);
    // The config's MAC covers the id function: switching it is tampering.
    const cfg = JSON.parse((await legacyStore.get('config')).toString());
    await legacyStore.put('config', Buffer.from(JSON.stringify({ ...cfg, idHash: 'blake3' })));
    await assert.rejects(Repository.open(legacyStore, [cred]), IntegrityError);
  });

  it('rotates keys: a new slot opens, removing the old slot locks the old passphrase out', async () => {
    const { repo, storage } = await setup();
    const slots = await Repository.readSlots(storage);
    await repo.addKey({ kind: 'passphrase', passphrase: 'new one' });
    await Repository.open(storage, [{ kind: 'passphrase', passphrase: 'new one' }]);
    await repo.removeKey(slots[0].id);
    await assert.rejects(Repository.open(storage, [cred]), KeyError);
    const again = await Repository.open(storage, [{ kind: 'passphrase', passphrase: 'new one' }]);
    await assert.rejects(again.removeKey((await Repository.readSlots(storage))[0].id), ConfigError);
  });

  it('round-trips an awkward tree byte for byte; an unchanged second snapshot stores nothing', async () => {
    const { repo, src, dir } = await setup();
    const first = await backupTree(repo, { root: src, kind: 'files', asset: 't' });
    assert.ok(first.manifest.stats.files > 300);
    const second = await backupTree(repo, { root: src, kind: 'files', asset: 't', parent: first });
    assert.equal(second.manifest.stats.filesRead, 0);
    assert.equal(second.manifest.stats.storedBytes, 0);
    const out = join(dir.path, 'out');
    await restoreTree(repo, second.manifest, out);
    assert.equal(await treeDigest(out), await treeDigest(src));
    assert.equal((await checkRepository(repo, { readData: true })).ok, true);
  });

  it('stores only what changed', async () => {
    const { repo, src } = await setup();
    const first = await backupTree(repo, { root: src, kind: 'files', asset: 't' });
    await appendFile(join(src, 'compressible.txt'), 'one more line\n');
    await writeFile(join(src, 'new-file'), 'new\n');
    const second = await backupTree(repo, { root: src, kind: 'files', asset: 't', parent: first });
    assert.equal(second.manifest.stats.filesRead, 2);
    assert.ok(second.manifest.stats.storedBytes < 200_000, `stored ${second.manifest.stats.storedBytes}`);
  });

  it('refuses to restore into a non-empty directory; --delta rewrites only what differs', async () => {
    const { repo, src, dir } = await setup();
    const snap = await backupTree(repo, { root: src, kind: 'files', asset: 't' });
    const out = join(dir.path, 'out');
    await restoreTree(repo, snap.manifest, out);
    await assert.rejects(restoreTree(repo, snap.manifest, out), (e: Error) => e instanceof FerryError && /not empty/.test(e.message));
    const buf = await readFile(join(out, 'random.bin'));
    buf[100] ^= 0xff;
    await writeFile(join(out, 'random.bin'), buf);
    await writeFile(join(out, 'extra-file'), 'not in the snapshot');
    await utimes(join(out, 'empty'), 1, 1);
    const r = await restoreTree(repo, snap.manifest, out, { delta: true });
    assert.ok(r.bytesWritten < 2 * 1024 * 1024, `wrote ${r.bytesWritten}`);
    assert.equal(r.removed, 1);
    assert.equal(await treeDigest(out), await treeDigest(src));
  });

  it('authenticates every byte: a flipped byte in a pack fails check and restore, naming pack and snapshot', async () => {
    const { repo, src, dir, storage } = await setup();
    const snap = await backupTree(repo, { root: src, kind: 'files', asset: 't' });
    const packDir = join(dir.path, 'repo', 'data');
    const sub = (await readdir(packDir))[0];
    const packs = await readdir(join(packDir, sub));
    const packPath = join(packDir, sub, packs[0]);
    const data = await readFile(packPath);
    data[Math.floor(data.length / 3)] ^= 0x01;
    await writeFile(packPath, data);
    const repo2 = await Repository.open(storage, [cred]);
    const report = await checkRepository(repo2, { readData: true });
    assert.equal(report.ok, false);
    const p = report.problems.find((x) => x.kind === 'corrupt-pack');
    assert.ok(p, JSON.stringify(report.problems));
    assert.equal(p.pack, packs[0]);
    assert.deepEqual(p.snapshots, [snap.id]);
    await assert.rejects(restoreTree(repo2, snap.manifest, join(dir.path, 'out2')), (e: Error) => e instanceof IntegrityError && /cannot restore .* at offset \d+/.test(e.message));
  });

  it('forget + prune frees unused data and keeps the rest restorable', async () => {
    const { repo, src, dir } = await setup();
    const first = await backupTree(repo, { root: src, kind: 'files', asset: 't' });
    await writeFile(join(src, 'random.bin'), 'replaced');
    const second = await backupTree(repo, { root: src, kind: 'files', asset: 't', parent: first });
    const dry = await prune(repo, { dryRun: true });
    assert.equal(dry.packsDelete.length + dry.packsRepack.length, 0);
    await forget(repo, [first.id]);
    const plan = await prune(repo);
    assert.ok(plan.bytesFreed > 3 * 1024 * 1024, `freed ${plan.bytesFreed}`);
    const repo2 = await Repository.open(repo.storage, [cred]);
    const rep = await checkRepository(repo2, { readData: true });
    assert.equal(rep.ok, true, JSON.stringify(rep.problems));
    assert.deepEqual((await listSnapshots(repo2)).map((s) => s.id), [second.id]);
    const out = join(dir.path, 'out');
    await restoreTree(repo2, second.manifest, out);
    assert.equal(await treeDigest(out), await treeDigest(src));
  });

  it('prune waits its turn: refused while a snapshot holds a lock; stale locks are ignored and removable', async () => {
    const { repo } = await setup();
    const held = await acquireLock(repo, 'files snapshot', false);
    await assert.rejects(prune(repo), LockError);
    await held.release();
    await prune(repo);
    // A lock whose holder is gone (dead pid on this host) is stale.
    const stale = { ...held.record, id: 'deadbeef', pid: 2 ** 22 + 12345 };
    await repo.storage.put(`locks/${stale.id}`, Buffer.from(JSON.stringify(stale)));
    await prune(repo);
    assert.equal((await removeLocks(repo, false)).length, 1);
    assert.equal((await listLocks(repo)).length, 0);
  });

  it('refuses to init over an existing repository', async () => {
    const { storage } = await setup();
    await assert.rejects(Repository.init(storage, cred), ConfigError);
  });

  it('opens an fs repository through a new FsStorage instance', async () => {
    const d = makeTempDir('ferry-repo-');
    cleanups.push(d.cleanup);
    await Repository.init(new FsStorage(d.path), cred);
    await Repository.open(new FsStorage(d.path), [cred]);
  });
});

describe('repository config parsing', () => {
  const good = { format: 'ferry-repository', version: 1, id: 'abc', created: '2026-11-24T00:00:00Z', chunker: { min: 1, avg: 2, max: 3, seed: 's' }, packSize: 16, compressionLevel: 3 };
  const parse = (o: unknown) => parseConfig(Buffer.from(JSON.stringify(o)), 'repo x');
  it('accepts a well-formed config and names the field of a malformed one', () => {
    assert.deepEqual(parse(good), good);
    assert.throws(() => parse({ ...good, packSize: 0 }), (e: Error) => e instanceof IntegrityError && /packSize/.test(e.message));
    assert.throws(() => parse({ ...good, chunker: { min: 1, avg: 2, max: 3 } }), (e: Error) => e instanceof IntegrityError && /chunker/.test(e.message));
    assert.throws(() => parse({ ...good, id: 7 }), (e: Error) => e instanceof IntegrityError && /field id/.test(e.message));
  });
  it('refuses what is not a Ferry config, and newer format versions, as configuration errors', () => {
    assert.throws(() => parse({ ...good, format: 'restic' }), (e: Error) => e instanceof ConfigError && /not a Ferry repository/.test(e.message));
    assert.throws(() => parse({ ...good, version: 99 }), (e: Error) => e instanceof ConfigError && /newer than this Ferry/.test(e.message));
    assert.throws(() => parseConfig(Buffer.from('{'), 'repo x'), (e: Error) => e instanceof IntegrityError && /not valid JSON/.test(e.message));
    assert.throws(() => parse({ ...good, idHash: 'sha3' }), (e: Error) => e instanceof ConfigError && /"sha3", which this Ferry does not know/.test(e.message) && /upgrade Ferry/.test(String((e as ConfigError).hint)));
    assert.equal(parse({ ...good, idHash: 'blake3' }).idHash, 'blake3');
  });
});
