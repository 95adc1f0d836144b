/**
 * `repo copy`: replicates a repository object by object to another storage
 * (any backend to any backend), with no re-encryption and no key: the copy has
 * the same repository id, key slots and master key, and the copier never
 * decrypts anything.
 *
 * One round: list the source (manifests first, then index files, then
 * everything else, so every object a listed manifest or index names was already
 * stored when it was listed), list the destination, copy what the destination
 * lacks in the write order of plan.ts, verifying each object. Interrupted at any
 * point, the destination is a valid repository (maybe with packs no index names
 * yet, which `repo check` notes and the next round indexes); the next round
 * copies only what is still missing, so a copy is resumable.
 *
 * Concurrency: two rounds to the same destination at once are safe without a
 * lock: every put is atomic, and both write the same bytes under the same key.
 * A copy never deletes at the destination.
 */
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { sha256Hex } from '../codec/hash.ts';
import { DIRS, parseConfig } from '../repo/format.ts';
import { packIdFromBytes } from '../repo/pack.ts';
import { listAll, type ObjectInfo, type Storage } from '../storage/types.ts';
import type { Clock } from '../util/clock.ts';
import { mapLimit } from '../util/concurrency.ts';
import { ConfigError, IntegrityError, NotFoundError, StorageError } from '../util/errors.ts';
import { killPoint } from '../util/killpoint.ts';
import { copyLag, phaseOf, planCopy, type CopyLag, type CopyPlan, type Phase } from './plan.ts';

/** Objects up to this size are copied through memory and read back; larger ones are streamed. */
const BUFFER_MAX = 4 * 1024 * 1024;
/** Attempts at a streamed copy that fails on storage. */
const STREAM_ATTEMPTS = 3;

export interface CopyOptions {
  clock: Clock;
  /** Objects in flight at once. Default 4. */
  concurrency?: number;
  onProgress?: (p: { done: number; total: number; bytes: number; phase: Phase }) => void;
  /** Stops between objects (the objects in flight finish). */
  signal?: AbortSignal;
}

export interface CopyReport {
  source: string;
  destination: string;
  repositoryId: string;
  /** The destination had no config before this round. */
  created: boolean;
  copied: number;
  bytes: number;
  /** Destination objects of the wrong size (partial copies) that were overwritten. */
  replaced: number;
  /** Listed at the source but gone when read (a concurrent prune or expire); the next round settles them. */
  vanished: string[];
  /** Objects the destination already had. */
  present: number;
  byPhase: Partial<Record<Phase, number>>;
  /** The lag when the round started (from its listings) and when it ended. */
  lagBefore: CopyLag;
  lagAfter: CopyLag;
  /** Nothing is missing at the end of the round. */
  caughtUp: boolean;
  /** Stopped early by the signal. */
  interrupted: boolean;
  durationMs: number;
}

async function listInto(storage: Storage, prefix: string, into: Map<string, ObjectInfo>, keep?: (key: string) => boolean): Promise<void> {
  for await (const o of listAll(storage, prefix)) {
    if (into.has(o.key)) continue;
    if (keep && !keep(o.key)) continue;
    into.set(o.key, o);
  }
}

/**
 * The source listing, in reverse write order: manifests and runs, then index files,
 * then the rest. Whatever a listed manifest names was stored before the manifest,
 * so it is in a later listing; a manifest that appears only in the last listing is
 * left for the next round.
 */
export async function listSource(source: Storage): Promise<ObjectInfo[]> {
  const out = new Map<string, ObjectInfo>();
  await listInto(source, DIRS.snapshots, out);
  await listInto(source, DIRS.runs, out);
  await listInto(source, DIRS.index, out);
  await listInto(source, '', out, (key) => {
    const p = phaseOf(key);
    return p === 'keys' || p === 'config' || p === 'data';
  });
  return [...out.values()];
}

/** Key -> size of every object at the destination. */
export async function listDest(dest: Storage): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const o of listAll(dest, '')) out.set(o.key, o.size);
  return out;
}

/** The repository id in a storage's config, or undefined when it has none. */
async function repositoryIdAt(storage: Storage): Promise<string | undefined> {
  let raw: Buffer;
  try {
    raw = await storage.get('config');
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
  return parseConfig(raw, storage.location).id;
}

/**
 * The source's repository id; refuses a destination that holds another repository.
 * Returns whether the destination already has a config.
 */
export async function checkPair(source: Storage, dest: Storage): Promise<{ id: string; destHasConfig: boolean }> {
  const id = await repositoryIdAt(source);
  if (id === undefined) {
    throw new ConfigError(`no Ferry repository at ${source.location} to copy from`, { hint: 'check --repo / FERRY_REPO' });
  }
  const destId = await repositoryIdAt(dest);
  if (destId !== undefined && destId !== id) {
    throw new ConfigError(`${dest.location} holds another repository (id ${destId.slice(0, 12)}), not a copy of ${source.location} (id ${id.slice(0, 12)})`, {
      hint: 'choose an empty destination or a copy of this repository',
    });
  }
  return { id, destHasConfig: destId !== undefined };
}

/** Counts the bytes passing through and hashes them. */
class Measure extends Transform {
  bytes = 0;
  readonly hash = createHash('sha256');
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null, c?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }
}

function baseName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/** Objects whose name is the SHA-256 of their bytes: index files and manifests. */
function contentNamed(key: string): boolean {
  return (key.startsWith(DIRS.index) || key.startsWith(DIRS.snapshots)) && /^[0-9a-f]{64}$/.test(baseName(key));
}

/** Checks a pack at the destination: its size and its id (SHA-256 of sealed header and trailer) from two range reads. */
async function verifyPackAt(dest: Storage, key: string, size: number): Promise<void> {
  const st = await dest.stat(key);
  if (!st || st.size !== size) throw new IntegrityError(`pack ${key} at ${dest.location} is ${st?.size ?? 'missing'} bytes after copying, expected ${size}`);
  if (size < 8) throw new IntegrityError(`pack ${key} at ${dest.location} is too short to be a pack`);
  const trailer = await dest.get(key, { offset: size - 8, length: 8 });
  const hlen = trailer.readUInt32LE(0);
  if (hlen + 8 > size) throw new IntegrityError(`pack ${key} at ${dest.location} has a header length ${hlen} beyond its size`);
  const tail = await dest.get(key, { offset: size - 8 - hlen, length: hlen + 8 });
  const id = packIdFromBytes(tail, `${dest.location}/${key}`);
  if (id !== baseName(key)) throw new IntegrityError(`pack ${key} at ${dest.location} has id ${id.slice(0, 12)} after copying, not its name`);
}

/**
 * Copies one object and verifies the destination. Returns false when the source
 * object vanished before it could be read.
 */
async function copyObject(source: Storage, dest: Storage, key: string, size: number): Promise<boolean> {
  const isPack = key.startsWith(DIRS.data);
  if (size <= BUFFER_MAX) {
    let data: Buffer;
    try {
      data = await source.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    if (data.length !== size) throw new IntegrityError(`${key} at ${source.location} is ${data.length} bytes, listed as ${size} (objects must not change)`);
    const hash = sha256Hex(data);
    // Never spread damage: a source object that fails its own check is not copied.
    if (contentNamed(key) && hash !== baseName(key)) throw new IntegrityError(`${key} at ${source.location} does not match its name (corrupt at the source)`);
    if (isPack && packIdFromBytes(data, `${source.location}/${key}`) !== baseName(key)) {
      throw new IntegrityError(`pack ${key} at ${source.location} does not match its name (corrupt at the source)`);
    }
    await dest.put(key, data);
    const back = await dest.get(key);
    if (sha256Hex(back) !== hash) throw new IntegrityError(`${key} at ${dest.location} reads back different bytes after copying`);
    return true;
  }
  // The storage's retry wrapper cannot retry a stream (its body is consumed): a few
  // attempts here, each from a fresh source stream.
  let measure!: Measure;
  for (let attempt = 1; ; attempt++) {
    let body: Readable;
    try {
      body = await source.getStream(key);
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    measure = new Measure();
    body.on('error', (e) => measure.destroy(e));
    body.pipe(measure);
    try {
      await dest.putStream(key, measure);
      break;
    } catch (e) {
      body.destroy();
      if (!(e instanceof StorageError) || attempt >= STREAM_ATTEMPTS) throw e;
      await sleepMs(500 * attempt);
    }
  }
  if (measure.bytes !== size) throw new IntegrityError(`${key} at ${source.location} streamed ${measure.bytes} bytes, listed as ${size} (objects must not change)`);
  if (isPack) await verifyPackAt(dest, key, size);
  else {
    const st = await dest.stat(key);
    if (!st || st.size !== size) throw new IntegrityError(`${key} at ${dest.location} is ${st?.size ?? 'missing'} bytes after copying, expected ${size}`);
  }
  return true;
}

/** One copy round (see the module comment). */
export async function copyRepository(source: Storage, dest: Storage, opts: CopyOptions): Promise<CopyReport> {
  const started = opts.clock.now();
  const { id, destHasConfig } = await checkPair(source, dest);
  const srcList = await listSource(source);
  const destMap = await listDest(dest);
  const plan: CopyPlan = planCopy(srcList, destMap);
  const lagBefore = copyLag(srcList, destMap, opts.clock.now());
  const report: CopyReport = {
    source: source.location,
    destination: dest.location,
    repositoryId: id,
    created: !destHasConfig,
    copied: 0,
    bytes: 0,
    replaced: 0,
    vanished: [],
    present: plan.present,
    byPhase: {},
    lagBefore,
    lagAfter: lagBefore,
    caughtUp: false,
    interrupted: false,
    durationMs: 0,
  };
  let done = 0;
  for (const { phase, items } of plan.phases) {
    if (opts.signal?.aborted) break;
    if (phase === 'index') await killPoint('repo-copy-before-index');
    await mapLimit(items, opts.concurrency ?? 4, async (item) => {
      if (opts.signal?.aborted) return;
      const ok = await copyObject(source, dest, item.key, item.size);
      if (!ok) {
        report.vanished.push(item.key);
        return;
      }
      destMap.set(item.key, item.size);
      report.copied++;
      report.bytes += item.size;
      if (item.replace) report.replaced++;
      report.byPhase[phase] = (report.byPhase[phase] ?? 0) + 1;
      opts.onProgress?.({ done: ++done, total: plan.total, bytes: report.bytes, phase });
      if (phase === 'data' && item.key.startsWith(DIRS.data)) await killPoint('repo-copy-pack');
      await killPoint('repo-copy-object');
    });
  }
  report.interrupted = !!opts.signal?.aborted;
  const stillThere = report.vanished.length ? new Set(report.vanished) : undefined;
  const remaining = stillThere ? srcList.filter((o) => !stillThere.has(o.key)) : srcList;
  report.lagAfter = copyLag(remaining, destMap, opts.clock.now());
  report.caughtUp = !report.interrupted && planCopy(remaining, destMap).total === 0;
  report.durationMs = opts.clock.now() - started;
  return report;
}

export interface WatchOptions extends CopyOptions {
  intervalMs: number;
  /** Called after each round, or with the error of a round that failed on storage. */
  onRound: (r: { round: number; report?: CopyReport; error?: Error }) => void;
  /** Waits between rounds; resolves early when the signal aborts. Default: a timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Copy rounds until the signal aborts: copy, report, sleep the interval. A round
 * that fails on storage (a network error after retries) is reported and the next
 * round tries again; any other error (another repository at the destination,
 * corruption) stops the watch.
 */
export async function watchCopy(source: Storage, dest: Storage, opts: WatchOptions): Promise<number> {
  const sleep = opts.sleep ?? sleepFor;
  let round = 0;
  while (!opts.signal?.aborted) {
    round++;
    try {
      opts.onRound({ round, report: await copyRepository(source, dest, opts) });
    } catch (e) {
      if (!(e instanceof StorageError)) throw e;
      opts.onRound({ round, error: e });
    }
    if (opts.signal?.aborted) break;
    await sleep(opts.intervalMs, opts.signal);
  }
  return round;
}
