/**
 * The blob envelope, as one synchronous stage chain (hash -> compress -> encrypt),
 * run in codec worker threads or, for small jobs, on the calling thread:
 *
 *   codec(1) || nonce(12) || AES-256-GCM(enc key, compressed plaintext) || tag(16)
 *
 * with associated data id(32) || codec(1). Opening checks the tag, decompresses to
 * the recorded length, and recomputes the id (the repository's keyed hash, codec/hash.ts).
 * Both directions write into buffers the caller provides, so the hot path
 * allocates nothing per blob beyond the cipher's small slices.
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { IntegrityError } from '../util/errors.ts';
import { CODEC_NONE, type Zstd } from './compress.ts';
import type { BlobIdFn } from './hash.ts';

export const ENVELOPE_OVERHEAD = 1 + 12 + 16;
const SLICE = 64 * 1024;

function aadOf(id: Uint8Array, codec: number): Buffer {
  const aad = Buffer.allocUnsafe(33);
  aad.set(id, 0);
  aad[32] = codec;
  return aad;
}

/**
 * Random nonces, drawn from the CSPRNG 4 KiB at a time: one randomFillSync call per
 * blob (64 KiB page chunks) cost about 5 us, more than encrypting the compressed chunk.
 */
const noncePool = Buffer.alloc(12 * 341);
let nonceAt = noncePool.length;
function nextNonce(into: Buffer): void {
  if (nonceAt === noncePool.length) {
    randomFillSync(noncePool);
    nonceAt = 0;
  }
  noncePool.copy(into, 0, nonceAt, nonceAt + 12);
  noncePool.fill(0, nonceAt, nonceAt + 12); // never kept after use
  nonceAt += 12;
}

/**
 * Seals `plain` into `out` at `at` (room for plain.length + ENVELOPE_OVERHEAD needed); returns
 * bytes written. `level` overrides the compressor's level for this blob.
 */
export function sealInto(z: Zstd, encKey: Uint8Array, id: Uint8Array, plain: Uint8Array, out: Buffer, at: number, level?: number): number {
  const c = z.compressView(plain, level);
  const start = at;
  out[at++] = c.codec;
  const nonce = out.subarray(at, at + 12);
  nextNonce(nonce);
  at += 12;
  const cipher = createCipheriv('aes-256-gcm', encKey, nonce);
  cipher.setAAD(aadOf(id, c.codec));
  for (let o = 0; o < c.data.length; o += SLICE) at += cipher.update(c.data.subarray(o, o + SLICE)).copy(out, at);
  at += cipher.final().copy(out, at);
  at += cipher.getAuthTag().copy(out, at);
  return at - start;
}

/** Reusable scratch space for opening (one per thread). */
export class OpenScratch {
  private buf = Buffer.alloc(0);
  get(n: number): Buffer {
    if (this.buf.length < n) this.buf = Buffer.allocUnsafeSlow(Math.max(n, 1 << 20));
    return this.buf.subarray(0, n);
  }
}

/**
 * Opens a sealed blob into `dst` (exactly `rawLength` bytes), or throws IntegrityError
 * naming `where`.
 */
export function openInto(z: Zstd, scratch: OpenScratch, encKey: Uint8Array, idOf: BlobIdFn, id: Uint8Array, sealed: Uint8Array, dst: Buffer, where: string): void {
  // Named only in errors: made only for one.
  const short = (): string => Buffer.from(id).toString('hex').slice(0, 16);
  if (sealed.length < ENVELOPE_OVERHEAD) throw new IntegrityError(`blob ${short()} in ${where} is truncated`);
  const codec = sealed[0];
  const nonce = sealed.subarray(1, 13);
  const body = sealed.subarray(13, sealed.length - 16);
  const d = createDecipheriv('aes-256-gcm', encKey, nonce);
  d.setAAD(aadOf(id, codec));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  // Stored blobs decrypt straight into dst; compressed ones into scratch, then decompress into dst.
  const comp = codec === CODEC_NONE && body.length === dst.length ? dst : scratch.get(body.length);
  let at = 0;
  try {
    for (let o = 0; o < body.length; o += SLICE) at += d.update(body.subarray(o, o + SLICE)).copy(comp, at);
    d.final();
  } catch {
    throw new IntegrityError(`blob ${short()} in ${where} failed authentication (corrupted or tampered)`);
  }
  if (codec === CODEC_NONE) {
    if (body.length !== dst.length) throw new IntegrityError(`blob ${short()} in ${where} has ${body.length} bytes, expected ${dst.length}`);
  } else {
    z.decompressInto(codec, comp, dst, () => `blob ${short()} in ${where}`);
  }
  if (!idOf(dst).equals(id)) throw new IntegrityError(`blob ${short()} in ${where} does not match its id`);
}

/** Opens a sealed blob into a new buffer. */
export function openEnvelope(z: Zstd, encKey: Uint8Array, idOf: BlobIdFn, id: Uint8Array, sealed: Uint8Array, rawLength: number, where: string): Buffer {
  const dst = Buffer.allocUnsafe(rawLength);
  openInto(z, new OpenScratch(), encKey, idOf, id, sealed, dst, where);
  return dst;
}
