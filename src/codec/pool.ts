/**
 * CodecPool: seals and opens blobs on worker threads, so compression and
 * encryption use every core while the main thread reads, chunks and hashes.
 *
 * Calls are batched: items queued in the same turn of the event loop (up to
 * BATCH_BYTES) travel to one worker in one message. Each batch carries two
 * shared slabs (SharedArrayBuffer), inputs and room for outputs, which the
 * worker fills in place and hands back; they are then reused. The steady state
 * allocates nothing, which keeps memory flat (a fresh buffer per batch left
 * hundreds of MB of garbage waiting for the GC), and since nothing is
 * transferred, no backing store changes hands (transferred ArrayBuffers count as
 * new external memory each time, which kept the main thread in full GCs).
 *
 * Inputs in buffers given to `lend` are not copied at all: the worker reads them
 * where they are (the backup's read buffers, which it holds until their chunks are sealed),
 * which saves the main thread copying every byte of a snapshot once.
 *
 * `seal` hands its result to a `consume` callback, called synchronously while the
 * recycled buffer is valid (the pack builder copies it in); `open` results are the
 * caller's to keep.
 * With `threads: 0` the work runs on the calling thread.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';
import { FerryError, IntegrityError } from '../util/errors.ts';
import { keepYoungGenerationSmall } from '../util/heap.ts';
import { ALIGN, writeRun } from './write.ts';
import { Zstd } from './compress.ts';
import { ENVELOPE_OVERHEAD, openEnvelope, sealInto } from './envelope.ts';
import type { MasterKey } from './keys.ts';
import { ID_BYTES, blobIds, type BlobIdFn, type IdHash } from './hash.ts';

export interface WorkerItem {
  /** Where the input is: in `input` at `off`, or with `src` in `sources[src]` at `off`. */
  off: number;
  len: number;
  src?: number;
  idOff: number;
  raw: number;
  where: string;
  /** `seal` only: the zstd level for this blob (default: the pool's). */
  level?: number;
  /** `open` only: write the plaintext to this file descriptor at `pos` (the worker coalesces adjacent writes). */
  fd?: number;
  pos?: number;
  /** With `fd`: the same file opened with O_DIRECT, for the whole pages of large writes (codec/write.ts). */
  dfd?: number;
}

export interface WorkerRequest {
  seq: number;
  op: Op;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
  /** Lent buffers that items read in place (see `lend`). */
  sources: SharedArrayBuffer[];
  items: WorkerItem[];
}

export interface WorkerReply {
  seq: number;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
  items: { off: number; len: number; error?: string; io?: boolean }[];
}

interface Job {
  id: Buffer;
  input: Uint8Array;
  raw: number;
  where: string;
  to?: { fd: number; pos: number; dfd?: number };
  level?: number;
  /** Sees the output while its buffer is valid; what it returns resolves the job. */
  take: (b: Buffer) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export type Op = 'seal' | 'open' | 'hash' | 'hashSeal';

/** Inputs at least this large are hashed on a worker (smaller ones cost more to send than to hash). */
const HASH_ON_WORKER = 16 << 10;
/** The id slot of a hash job (unused). */
const NO_ID = Buffer.alloc(ID_BYTES);

/** Flush a queue once it holds this much input (fewer, larger messages: postMessage costs about 1 ms each). */
const BATCH_BYTES = 3 << 20;
/**
 * Size of recycled buffers: room for the largest chunk (4 MiB) with its id and envelope,
 * so no item needs a buffer of its own. A batch is cut to fit; a larger item (a chunker
 * configured with bigger chunks) gets its own buffers.
 */
const SLAB = (4 << 20) + (64 << 10);
/** Room for the ids of a batch of lent inputs (32 bytes each). */
const SMALL_SLAB = 64 << 10;
/**
 * Batches in flight per worker. Opening for a restore: two, so a worker opens the next batch
 * while the file writes of the last one run (codec/write.ts). Sealing: one; a second batch
 * per worker bought no speed (one trip per batch since hash and seal go together) and held
 * two more slabs per worker (about 16 MB, with the 300 MB bound of a 10 GB snapshot close).
 */
const perWorker = (op: Op): number => (op === 'open' ? 2 : 1);

/**
 * A small young generation: the cipher hands back many short-lived 64 KiB buffers,
 * and frequent cheap scavenges free them long before external-memory pressure would
 * (with the default, each worker held a hundred MB or more of dead buffers).
 */
const resourceLimits = { maxYoungGenerationSizeMb: 2 };

/** worker_threads, loaded with the first worker: commands that never start one (wal push) skip it. */
function workerThreads(): typeof import('node:worker_threads') {
  return createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
}

function startWorker(workerData: unknown): Worker {
  const { Worker } = workerThreads();
  // In the bundle this module lives in dist/ next to codec-worker.mjs. Under tsx (tests,
  // development) it is src/codec/pool.ts, and the worker must register tsx itself.
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./codec-worker.mjs', here), { workerData, resourceLimits });
  const src = new URL('./worker.ts', here).href;
  const boot = `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(src)}); });`;
  return new Worker(boot, { eval: true, workerData, resourceLimits });
}

/**
 * A shared buffer whose first byte is page-aligned: a shared WebAssembly memory (mapped on
 * its own), so plaintexts laid out aligned in it can be written with O_DIRECT (codec/write.ts).
 */
function alignedShared(n: number): SharedArrayBuffer {
  const pages = Math.ceil(n / 65536);
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as unknown as SharedArrayBuffer;
}

function outSize(op: Op, j: Job): number {
  if (op === 'hash') return ID_BYTES;
  if (op === 'hashSeal') return ID_BYTES + j.input.length + ENVELOPE_OVERHEAD;
  if (op === 'open' && j.to?.dfd !== undefined) return j.raw + ALIGN; // room to align it (codec/write.ts)
  return op === 'seal' ? j.input.length + ENVELOPE_OVERHEAD : j.raw;
}

export class CodecPool {
  private readonly workers: { w: Worker; busy: number }[] = [];
  private readonly waiting = new Map<number, { op: Op; jobs: Job[] }>();
  private seq = 0;
  /**
   * Jobs waiting for a worker: `queue[op]` from index `head[op]` on (slots before it are sent
   * and cleared). A restore queues thousands of blobs of one range at once; cutting sent jobs off
   * the front with a copy of the rest at every flush made queueing quadratic (about a fifth of
   * the main thread's CPU in a restore of 800 MiB: about 700 of its perf samples became 550).
   */
  private queue: Record<Op, (Job | undefined)[]> = { seal: [], open: [], hash: [], hashSeal: [] };
  private head: Record<Op, number> = { seal: 0, open: 0, hash: 0, hashSeal: 0 };
  private queuedBytes: Record<Op, number> = { seal: 0, open: 0, hash: 0, hashSeal: 0 };
  private flushScheduled = false;
  private local?: Zstd;
  private localOut = Buffer.alloc(0);
  private failed?: Error;
  private closing = false;
  private readonly slabs: SharedArrayBuffer[] = [];
  private readonly smallSlabs: SharedArrayBuffer[] = [];
  private readonly lent = new WeakSet<ArrayBufferLike>();

  constructor(
    private readonly key: MasterKey,
    readonly idHash: IdHash,
    private readonly level: number,
    threads: number = availableParallelism(),
  ) {
    if (threads > 0) keepYoungGenerationSmall();
    for (let i = 0; i < threads; i++) {
      const w = startWorker({ enc: key.enc, mac: key.mac, level, idHash });
      const entry = { w, busy: 0 };
      w.on('message', (m: WorkerReply) => this.onReply(m, entry));
      const n = i + 1;
      w.on('error', (e) => this.fail(new FerryError(`codec worker ${n} failed: ${e.message}`, { cause: e })));
      // Killed, out of memory or crashed with jobs on it: they would never settle otherwise.
      w.on('exit', (code) => {
        if (!this.closing) this.fail(new FerryError(`codec worker ${n} exited unexpectedly (code ${code})`, { hint: 'look for an out-of-memory kill in the system log; run the command again' }));
      });
      w.unref(); // referenced only while it has work, so an idle pool never keeps the process alive
      this.workers.push(entry);
    }
  }

  private ids?: BlobIdFn;
  /** The blob id of `plain`, on this thread. */
  private readonly idOf: BlobIdFn = (plain) => (this.ids ??= blobIds(this.idHash, this.key.mac))(plain);

  /**
   * Lends `buf` (a view of a SharedArrayBuffer) to the workers: inputs in it are read in place
   * instead of copied. The caller promises not to change the bytes of a job's input until that
   * job settles. Returns `buf`.
   */
  lend(buf: Buffer): Buffer {
    if (!(buf.buffer instanceof SharedArrayBuffer)) throw new TypeError('only views of a SharedArrayBuffer can be lent to the codec workers');
    this.lent.add(buf.buffer);
    return buf;
  }

  /** With `threads: 0`: runs `f` on this thread with its zstd context; a throw becomes a rejection. */
  private onThisThread<T>(f: (z: Zstd) => T | PromiseLike<T>): Promise<T> {
    this.local ??= new Zstd(this.level);
    try {
      return Promise.resolve(f(this.local));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Seals `plain` (compressed at `level`, default the pool's); `consume` must copy what it
   * needs from the sealed bytes before returning.
   */
  seal<T>(id: Buffer, plain: Uint8Array, consume: (sealed: Buffer) => T, level?: number): Promise<T> {
    if (!this.workers.length) {
      return this.onThisThread((z) => {
        // consume() copies synchronously, so one scratch buffer serves every call.
        if (this.localOut.length < plain.length + ENVELOPE_OVERHEAD) this.localOut = Buffer.allocUnsafeSlow(plain.length + ENVELOPE_OVERHEAD);
        return consume(this.localOut.subarray(0, sealInto(z, this.key.enc, id, plain, this.localOut, 0, level)));
      });
    }
    return this.enqueue('seal', id, plain, plain.length, '', consume as (b: Buffer) => unknown, undefined, level) as Promise<T>;
  }

  /**
   * The blob id of `plain` (the repository's keyed hash, codec/hash.ts), computed on a worker for
   * inputs large enough to be worth the trip, so the main thread only reads and cuts.
   */
  hash(plain: Uint8Array): Promise<Buffer> {
    if (!this.workers.length || plain.length < HASH_ON_WORKER) return Promise.resolve(this.idOf(plain));
    return this.enqueue('hash', NO_ID, plain, 0, '', (b) => Buffer.from(b)) as Promise<Buffer>;
  }

  /**
   * Hashes and seals `plain` in one trip to a worker, for data that is most likely new (a
   * file the parent snapshot did not have): the bytes are copied and sent once instead of
   * twice. `consume` sees the id and the sealed bytes while the buffer holding them is
   * valid and decides there whether to keep them (a duplicate is simply dropped).
   */
  hashSeal<T>(plain: Uint8Array, consume: (id: Buffer, sealed: Buffer) => T, level?: number): Promise<T> {
    if (!this.workers.length) {
      const id = this.idOf(plain);
      return this.seal(id, plain, (sealed) => consume(id, sealed), level);
    }
    const split = (b: Buffer) => consume(Buffer.from(b.subarray(0, ID_BYTES)), b.subarray(ID_BYTES));
    return this.enqueue('hashSeal', NO_ID, plain, plain.length, '', split as (b: Buffer) => unknown, undefined, level) as Promise<T>;
  }

  open(id: Buffer, sealed: Uint8Array, rawLength: number, where: string): Promise<Buffer> {
    if (!this.workers.length) return this.onThisThread((z) => Buffer.from(openEnvelope(z, this.key.enc, this.idOf, id, sealed, rawLength, where)));
    return this.enqueue('open', id, sealed, rawLength, where, (b) => Buffer.from(b)) as Promise<Buffer>;
  }

  /**
   * Opens a sealed blob and writes the plaintext to `fd` at `position`. The write happens
   * on the worker, straight from its output buffer: adjacent blobs of one batch go to the
   * file in one call, and the main thread makes no write calls at all (a restore of 64 KiB
   * page chunks otherwise spent most of its time in one pwrite per chunk on the main thread).
   * Resolves with the number of bytes written; `fd` must stay open until then. `directFd`:
   * the same file opened with O_DIRECT, used for whole pages of large runs (codec/write.ts).
   */
  openTo(id: Buffer, sealed: Uint8Array, rawLength: number, where: string, fd: number, position: number, directFd?: number): Promise<number> {
    if (!this.workers.length) {
      return this.onThisThread((z) => {
        const plain = openEnvelope(z, this.key.enc, this.idOf, id, sealed, rawLength, where);
        // On this thread the plaintext is not laid out aligned: the page cache only.
        return writeRun(fd, undefined, plain, 0, plain.length, position).then(
          () => plain.length,
          (e: Error) => Promise.reject(new FerryError(`cannot write: ${e.message}`)),
        );
      });
    }
    return this.enqueue('open', id, sealed, rawLength, where, (b) => b.length, { fd, pos: position, ...(directFd !== undefined ? { dfd: directFd } : {}) }) as Promise<number>;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((x) => x.w.terminate()));
    this.workers.length = 0;
  }

  private enqueue(op: Op, id: Buffer, input: Uint8Array, raw: number, where: string, take: (b: Buffer) => unknown, to?: Job['to'], level?: number): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.queue[op].push({ id, input, raw, where, take, resolve, reject, ...(to ? { to } : {}), ...(level !== undefined ? { level } : {}) });
      this.queuedBytes[op] += input.length;
      if (this.queuedBytes[op] >= BATCH_BYTES) this.flush(op);
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          this.flushAll();
        });
      }
    });
  }

  private slab(n: number): SharedArrayBuffer {
    // Larger than a slab (a chunker set to bigger chunks): a plain buffer, used once. Its start
    // is not page-aligned, so a direct write from it fails with EINVAL and falls back (write.ts).
    if (n > SLAB) return new SharedArrayBuffer(n);
    // The input of a batch whose inputs are all lent holds only their ids: a small slab (a large
    // one, once written as some batch's output, would stay resident for a few ids).
    if (n <= SMALL_SLAB) return this.smallSlabs.pop() ?? new SharedArrayBuffer(SMALL_SLAB);
    return this.slabs.pop() ?? alignedShared(SLAB);
  }

  private recycle(b: SharedArrayBuffer): void {
    // Every slab is kept: a new one is made only when none is free, so there are never more than
    // the batches in flight need. Dropping one would not free it soon: a WebAssembly memory goes
    // only with a full GC, which its size does not prompt.
    if (b.byteLength === SLAB) this.slabs.push(b);
    else if (b.byteLength === SMALL_SLAB) this.smallSlabs.push(b);
  }

  /** Sends queued jobs, cut into batches whose inputs and outputs fit a slab, while a worker has room. */
  private flush(op: Op): void {
    const jobs = this.queue[op] as Job[];
    let i = this.head[op];
    const limit = perWorker(op);
    while (i < jobs.length && this.workers.some((w) => w.busy < limit)) {
      let inBytes = 32 + this.inSlab(jobs[i]);
      let outBytes = outSize(op, jobs[i]);
      let end = i + 1;
      while (end < jobs.length) {
        const ni = inBytes + 32 + this.inSlab(jobs[end]);
        const no = outBytes + outSize(op, jobs[end]);
        if (ni > SLAB || no > SLAB) break;
        inBytes = ni;
        outBytes = no;
        end++;
      }
      this.send(op, jobs.slice(i, end), inBytes, outBytes);
      for (; i < end; i++) {
        this.queuedBytes[op] -= jobs[i].input.length;
        (jobs as (Job | undefined)[])[i] = undefined; // sent: `waiting` holds it now
      }
    }
    // Drop the sent slots once they are at least half the array: what is copied then is no more
    // than what was sent since the last copy, so each job is copied O(1) times.
    if (2 * i >= jobs.length) {
      this.queue[op] = jobs.slice(i);
      i = 0;
    }
    this.head[op] = i;
  }

  /** Bytes a job's input takes in the input slab: none when the worker reads it where it is. */
  private inSlab(j: Job): number {
    return this.lent.has(j.input.buffer) ? 0 : j.input.length;
  }

  private send(op: Op, jobs: Job[], inBytes: number, outBytes: number): void {
    const input = this.slab(inBytes);
    const output = this.slab(outBytes);
    const view = Buffer.from(input);
    const sources: SharedArrayBuffer[] = [];
    let at = 0;
    const items: WorkerItem[] = jobs.map((j) => {
      view.set(j.id, at);
      const idOff = at;
      at += 32;
      const extra = { ...(j.to ? { fd: j.to.fd, pos: j.to.pos, ...(j.to.dfd !== undefined ? { dfd: j.to.dfd } : {}) } : {}), ...(j.level !== undefined ? { level: j.level } : {}) };
      if (this.lent.has(j.input.buffer)) {
        const b = j.input.buffer as SharedArrayBuffer;
        let src = sources.indexOf(b);
        if (src < 0) src = sources.push(b) - 1;
        return { off: j.input.byteOffset, len: j.input.length, src, idOff, raw: j.raw, where: j.where, ...extra };
      }
      view.set(j.input, at);
      const it: WorkerItem = { off: at, len: j.input.length, idOff, raw: j.raw, where: j.where, ...extra };
      at += j.input.length;
      return it;
    });
    const seq = ++this.seq;
    this.waiting.set(seq, { op, jobs });
    const target = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    if (target.busy++ === 0) target.w.ref();
    target.w.postMessage({ seq, op, input, output, sources, items } satisfies WorkerRequest);
  }

  private onReply(m: WorkerReply, worker: { w: Worker; busy: number }): void {
    if (--worker.busy === 0) worker.w.unref();
    const entry = this.waiting.get(m.seq);
    if (!entry) return;
    this.waiting.delete(m.seq);
    const out = Buffer.from(m.output);
    entry.jobs.forEach((j, i) => {
      const r = m.items[i];
      if (r.error) j.reject(r.io ? new FerryError(r.error) : new IntegrityError(r.error));
      else {
        try {
          j.resolve(j.take(out.subarray(r.off, r.off + r.len)));
        } catch (e) {
          j.reject(e as Error);
        }
      }
    });
    this.recycle(m.input);
    this.recycle(m.output);
    this.flushAll();
  }

  private flushAll(): void {
    this.flush('hash');
    this.flush('hashSeal');
    this.flush('seal');
    this.flush('open');
  }

  /** Fails every job, sent or still queued, and every later call, with the first error seen. */
  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    for (const { jobs } of this.waiting.values()) for (const j of jobs) j.reject(e);
    this.waiting.clear();
    for (const op of Object.keys(this.queue) as Op[]) {
      for (let i = this.head[op]; i < this.queue[op].length; i++) this.queue[op][i]?.reject(e);
      this.queue[op] = [];
      this.head[op] = 0;
      this.queuedBytes[op] = 0;
    }
  }
}
