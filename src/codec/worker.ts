/**
 * Codec worker thread: seals and opens batches of blobs with its own zstd context.
 * Protocol (see pool.ts): a request carries two shared slabs, `input` (every
 * input back to back, ids included) and `output` (room for every result, filled
 * in place), and a list of items; the reply hands both back with each item's
 * output offset and length, or an error message.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { Zstd } from './compress.ts';
import { OpenScratch, openInto, sealInto } from './envelope.ts';
import { blobIds, type IdHash } from './hash.ts';
import type { WorkerReply, WorkerRequest } from './pool.ts';
import { alignedAt, writeRun } from './write.ts';

const { enc, mac, level, idHash } = workerData as { enc: Uint8Array; mac: Uint8Array; level: number; idHash: IdHash };
const idOf = blobIds(idHash, mac);
const z = new Zstd(level);
const scratch = new OpenScratch();

/**
 * The cipher hands back a fresh buffer per slice. Their memory lives outside the JS heap,
 * and V8 collects it only after tens of MB have piled up (external-memory pressure), so
 * each worker sat on up to ~50 MB of dead slices. A young-generation collection every 2 MiB
 * through the cipher (well under a millisecond on this tiny heap) frees them. Every 8 MiB
 * left the malloc arenas of the workers holding that much more at their peak: the 10 GB
 * snapshot of bench/memory peaked at 277-298 MB over four runs, against 263-275 MB with 2 MiB.
 */
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as ((o: { type: 'minor' | 'major' }) => void) | undefined;
const COLLECT_EVERY = 2 << 20;
let sinceCollect = 0;

parentPort!.on('message', (req: WorkerRequest) => void handle(req));

async function handle(req: WorkerRequest): Promise<void> {
  const input = Buffer.from(req.input);
  const out = Buffer.from(req.output);
  const sources = req.sources.map((s) => Buffer.from(s));
  let at = 0;
  const items = req.items.map((it) => {
    const id = input.subarray(it.idOff, it.idOff + 32);
    const src = (it.src === undefined ? input : sources[it.src]).subarray(it.off, it.off + it.len);
    try {
      if (req.op === 'hash') {
        idOf(src).copy(out, at);
        const r = { off: at, len: 32 };
        at += 32;
        return r;
      }
      if (req.op === 'hashSeal') {
        const id = out.subarray(at, at + 32);
        idOf(src).copy(id);
        const n = sealInto(z, enc, id, src, out, at + 32, it.level);
        const r = { off: at, len: 32 + n };
        at += 32 + n;
        return r;
      }
      if (req.op === 'seal') {
        const n = sealInto(z, enc, id, src, out, at, it.level);
        const r = { off: at, len: n };
        at += n;
        return r;
      }
      // A plaintext bound for a file directly is aligned like its file position (codec/write.ts).
      if (it.dfd !== undefined && it.pos !== undefined) at = alignedAt(at, it.pos);
      openInto(z, scratch, enc, idOf, id, src, out.subarray(at, at + it.raw), it.where);
      const r = { off: at, len: it.raw };
      at += it.raw;
      return r;
    } catch (e) {
      return { off: 0, len: 0, error: (e as Error).message };
    }
  });
  if (req.op === 'open') await writeOut(req, items, out);
  const reply: WorkerReply = { seq: req.seq, input: req.input, output: req.output, items };
  parentPort!.postMessage(reply);
  // The cipher's garbage is about the size of what it went through: the sealed output, or
  // for opening the sealed input (the plaintext goes straight into the slab).
  sinceCollect += req.op === 'open' ? req.items.reduce((n, it) => n + it.len, 0) : req.op === 'hash' ? 0 : at;
  if (sinceCollect >= COLLECT_EVERY) {
    sinceCollect = 0;
    collect?.({ type: 'minor' });
  }
}

/**
 * Writes opened blobs that name a file descriptor. Outputs lie back to back in the slab, so
 * a run of items for one file at adjacent positions is one write call.
 */
async function writeOut(req: WorkerRequest, items: WorkerReply['items'], out: Buffer): Promise<void> {
  const runs: Promise<void>[] = [];
  for (let i = 0; i < items.length; ) {
    const it = req.items[i];
    if (it.fd === undefined || it.pos === undefined || items[i].error) {
      i++;
      continue;
    }
    let j = i + 1;
    let end = items[i].off + items[i].len;
    let pos = it.pos + items[i].len;
    while (j < items.length && req.items[j].fd === it.fd && req.items[j].dfd === it.dfd && req.items[j].pos === pos && !items[j].error && items[j].off === end) {
      end += items[j].len;
      pos += items[j].len;
      j++;
    }
    const [from, to] = [i, j];
    runs.push(
      writeRun(it.fd, it.dfd, out, items[i].off, end - items[i].off, it.pos).catch((e: Error) => {
        for (let k = from; k < to; k++) items[k] = { off: 0, len: 0, error: `cannot write: ${e.message}`, io: true };
      }),
    );
    i = j;
  }
  await Promise.all(runs);
}
