/**
 * Codec worker thread: seals and opens batches of blobs with its own zstd context.
 * Protocol (see pool.ts): a request carries one ArrayBuffer holding every input
 * back to back and a list of items; the reply carries one ArrayBuffer with every
 * output and, per item, its offset and length or an error message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Zstd } from './compress.ts';
import { ENVELOPE_OVERHEAD, openEnvelope, sealInto } from './envelope.ts';
import type { WorkerReply, WorkerRequest } from './pool.ts';

const { enc, mac, level } = workerData as { enc: Uint8Array; mac: Uint8Array; level: number };
const z = new Zstd(level);

parentPort!.on('message', (req: WorkerRequest) => {
  const input = Buffer.from(req.data);
  let reply: WorkerReply;
  if (req.op === 'seal') {
    let cap = 0;
    for (const it of req.items) cap += it.len + ENVELOPE_OVERHEAD;
    const out = Buffer.allocUnsafeSlow(cap);
    let at = 0;
    const items = req.items.map((it) => {
      const n = sealInto(z, enc, input.subarray(it.idOff, it.idOff + 32), input.subarray(it.off, it.off + it.len), out, at);
      const r = { off: at, len: n };
      at += n;
      return r;
    });
    reply = { seq: req.seq, data: out.buffer, items };
  } else {
    let cap = 0;
    for (const it of req.items) cap += it.raw;
    const out = Buffer.allocUnsafeSlow(cap);
    let at = 0;
    const items = req.items.map((it) => {
      try {
        const plain = openEnvelope(z, enc, mac, input.subarray(it.idOff, it.idOff + 32), input.subarray(it.off, it.off + it.len), it.raw, it.where);
        plain.copy(out, at);
        const r = { off: at, len: plain.length };
        at += plain.length;
        return r;
      } catch (e) {
        return { off: 0, len: 0, error: (e as Error).message };
      }
    });
    reply = { seq: req.seq, data: out.buffer, items };
  }
  parentPort!.postMessage(reply, [reply.data]);
});
