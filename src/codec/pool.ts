/**
 * CodecPool: seals and opens blobs on worker threads, so compression and
 * encryption use every core while the main thread reads, chunks and hashes.
 *
 * Calls are batched: items queued in the same turn of the event loop (up to
 * BATCH_BYTES) travel to one worker in one message, inputs copied into one
 * transferable buffer, outputs returned the same way. With `threads: 0` the
 * work runs on the calling thread (small jobs, tools).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { IntegrityError } from '../util/errors.ts';
import { Zstd } from './compress.ts';
import { ENVELOPE_OVERHEAD, openEnvelope, sealInto } from './envelope.ts';
import type { MasterKey } from './keys.ts';

export interface WorkerItem {
  off: number;
  len: number;
  idOff: number;
  raw: number;
  where: string;
}

export interface WorkerRequest {
  seq: number;
  op: 'seal' | 'open';
  data: ArrayBuffer;
  items: WorkerItem[];
}

export interface WorkerReply {
  seq: number;
  data: ArrayBuffer;
  items: { off: number; len: number; error?: string }[];
}

interface Job {
  id: Buffer;
  input: Uint8Array;
  raw: number;
  where: string;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

const BATCH_BYTES = 1 << 20;

function startWorker(workerData: unknown): Worker {
  // In the bundle this module lives in dist/ next to codec-worker.mjs. Under tsx (tests,
  // development) it is src/codec/pool.ts, and the worker must register tsx itself.
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./codec-worker.mjs', here), { workerData });
  const src = new URL('./worker.ts', here).href;
  const boot = `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(src)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

export class CodecPool {
  private readonly workers: { w: Worker; busy: number }[] = [];
  private readonly waiting = new Map<number, { op: 'seal' | 'open'; jobs: Job[] }>();
  private seq = 0;
  private queue: Record<'seal' | 'open', Job[]> = { seal: [], open: [] };
  private queuedBytes: Record<'seal' | 'open', number> = { seal: 0, open: 0 };
  private flushScheduled = false;
  private local?: Zstd;
  private failed?: Error;

  constructor(
    private readonly key: MasterKey,
    private readonly level: number,
    threads: number = availableParallelism(),
  ) {
    for (let i = 0; i < threads; i++) {
      const w = startWorker({ enc: key.enc, mac: key.mac, level });
      w.on('message', (m: WorkerReply) => this.onReply(m, this.workers[i]));
      w.on('error', (e) => this.fail(e));
      w.unref(); // referenced only while it has work, so an idle pool never keeps the process alive
      this.workers.push({ w, busy: 0 });
    }
  }

  /** Bytes of work waiting or in flight (for backpressure). */
  get pending(): number {
    let n = 0;
    for (const x of this.waiting.values()) for (const j of x.jobs) n += j.input.length;
    return n + this.queuedBytes.seal + this.queuedBytes.open;
  }

  seal(id: Buffer, plain: Uint8Array): Promise<Buffer> {
    if (!this.workers.length) {
      this.local ??= new Zstd(this.level);
      const out = Buffer.allocUnsafe(plain.length + ENVELOPE_OVERHEAD);
      const n = sealInto(this.local, this.key.enc, id, plain, out, 0);
      return Promise.resolve(out.subarray(0, n));
    }
    return this.enqueue('seal', id, plain, plain.length, '');
  }

  open(id: Buffer, sealed: Uint8Array, rawLength: number, where: string): Promise<Buffer> {
    if (!this.workers.length) {
      this.local ??= new Zstd(this.level);
      try {
        return Promise.resolve(openEnvelope(this.local, this.key.enc, this.key.mac, id, sealed, rawLength, where));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.enqueue('open', id, sealed, rawLength, where);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((x) => x.w.terminate()));
    this.workers.length = 0;
  }

  private enqueue(op: 'seal' | 'open', id: Buffer, input: Uint8Array, raw: number, where: string): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.queue[op].push({ id, input, raw, where, resolve, reject });
      this.queuedBytes[op] += input.length;
      if (this.queuedBytes[op] >= BATCH_BYTES) this.flush(op);
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          this.flush('seal');
          this.flush('open');
        });
      }
    });
  }

  private flush(op: 'seal' | 'open'): void {
    const jobs = this.queue[op];
    if (!jobs.length) return;
    this.queue[op] = [];
    this.queuedBytes[op] = 0;
    let size = 0;
    for (const j of jobs) size += 32 + j.input.length;
    const data = new ArrayBuffer(size);
    const view = Buffer.from(data);
    let at = 0;
    const items: WorkerItem[] = jobs.map((j) => {
      view.set(j.id, at);
      const idOff = at;
      at += 32;
      view.set(j.input, at);
      const it = { off: at, len: j.input.length, idOff, raw: j.raw, where: j.where };
      at += j.input.length;
      return it;
    });
    const seq = ++this.seq;
    this.waiting.set(seq, { op, jobs });
    const target = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    if (target.busy++ === 0) target.w.ref();
    target.w.postMessage({ seq, op, data, items } satisfies WorkerRequest, [data]);
  }

  private onReply(m: WorkerReply, worker: { w: Worker; busy: number }): void {
    if (--worker.busy === 0) worker.w.unref();
    const entry = this.waiting.get(m.seq);
    if (!entry) return;
    this.waiting.delete(m.seq);
    const out = Buffer.from(m.data);
    entry.jobs.forEach((j, i) => {
      const r = m.items[i];
      if (r.error) j.reject(new IntegrityError(r.error));
      else j.resolve(out.subarray(r.off, r.off + r.len));
    });
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const { jobs } of this.waiting.values()) for (const j of jobs) j.reject(e);
    this.waiting.clear();
  }
}
