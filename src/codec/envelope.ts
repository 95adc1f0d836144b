/**
 * The blob envelope, as one synchronous stage chain (hash -> compress -> encrypt),
 * run in codec worker threads or, for small jobs, on the calling thread:
 *
 *   codec(1) || nonce(12) || AES-256-GCM(enc key, compressed plaintext) || tag(16)
 *
 * with associated data id(32) || codec(1). Opening checks the tag, decompresses to
 * the recorded length, and recomputes the id (HMAC-SHA-256 of the plaintext).
 */
import { createCipheriv, createDecipheriv, createHmac, randomFillSync } from 'node:crypto';
import { IntegrityError } from '../util/errors.ts';
import { CODEC_NONE, type Zstd } from './compress.ts';

export const ENVELOPE_OVERHEAD = 1 + 12 + 16;
const SLICE = 64 * 1024;

function aadOf(id: Uint8Array, codec: number): Buffer {
  const aad = Buffer.allocUnsafe(33);
  aad.set(id, 0);
  aad[32] = codec;
  return aad;
}

/** Seals `plain` into `out` at `at` (room for plain.length + ENVELOPE_OVERHEAD needed); returns bytes written. */
export function sealInto(z: Zstd, encKey: Uint8Array, id: Uint8Array, plain: Uint8Array, out: Buffer, at: number): number {
  const c = z.compressView(plain);
  const start = at;
  out[at++] = c.codec;
  const nonce = out.subarray(at, at + 12);
  randomFillSync(nonce);
  at += 12;
  const cipher = createCipheriv('aes-256-gcm', encKey, nonce);
  cipher.setAAD(aadOf(id, c.codec));
  for (let o = 0; o < c.data.length; o += SLICE) at += cipher.update(c.data.subarray(o, o + SLICE)).copy(out, at);
  at += cipher.final().copy(out, at);
  at += cipher.getAuthTag().copy(out, at);
  return at - start;
}

/** Opens a sealed blob into a new buffer of `rawLength` bytes, or throws IntegrityError naming `where`. */
export function openEnvelope(z: Zstd, encKey: Uint8Array, macKey: Uint8Array, id: Uint8Array, sealed: Uint8Array, rawLength: number, where: string): Buffer {
  const short = Buffer.from(id).toString('hex').slice(0, 16);
  if (sealed.length < ENVELOPE_OVERHEAD) throw new IntegrityError(`blob ${short} in ${where} is truncated`);
  const codec = sealed[0];
  const nonce = sealed.subarray(1, 13);
  const body = sealed.subarray(13, sealed.length - 16);
  const d = createDecipheriv('aes-256-gcm', encKey, nonce);
  d.setAAD(aadOf(id, codec));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  const comp = Buffer.allocUnsafe(body.length);
  let at = 0;
  try {
    for (let o = 0; o < body.length; o += SLICE) at += d.update(body.subarray(o, o + SLICE)).copy(comp, at);
    d.final();
  } catch {
    throw new IntegrityError(`blob ${short} in ${where} failed authentication (corrupted or tampered)`);
  }
  let plain: Buffer;
  if (codec === CODEC_NONE) {
    if (comp.length !== rawLength) throw new IntegrityError(`blob ${short} in ${where} has ${comp.length} bytes, expected ${rawLength}`);
    plain = comp;
  } else {
    plain = Buffer.allocUnsafe(rawLength);
    z.decompressInto(codec, comp, plain, `blob ${short} in ${where}`);
  }
  const check = createHmac('sha256', macKey).update(plain).digest();
  if (!check.equals(id)) throw new IntegrityError(`blob ${short} in ${where} does not match its id`);
  return plain;
}
