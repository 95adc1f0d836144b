/**
 * Blob envelope: what one chunk looks like inside a pack.
 *   codec(1) || nonce(12) || AES-256-GCM(enc key, compressed plaintext) || tag(16)
 * with associated data = id(32) || codec(1). Opening checks the tag, decompresses,
 * and recomputes the id from the plaintext (durability rule 4).
 */
import { blobId } from '../codec/hash.ts';
import { compress, decompress } from '../codec/compress.ts';
import { sealParts, unseal } from '../codec/encrypt.ts';
import type { MasterKey } from '../codec/keys.ts';
import { IntegrityError } from '../util/errors.ts';

export type BlobType = 'data' | 'tree';

export function blobAad(id: Buffer, codec: number): Buffer {
  const aad = Buffer.allocUnsafe(33);
  id.copy(aad, 0);
  aad[32] = codec;
  return aad;
}

/** Compresses and encrypts one chunk; returns the sealed parts (not concatenated, to avoid a copy). */
export async function sealBlob(key: MasterKey, id: Buffer, plain: Buffer, level: number): Promise<Buffer[]> {
  const c = await compress(plain, level);
  const parts = sealParts(key.enc, blobAad(id, c.codec), c.data);
  return [Buffer.from([c.codec]), ...parts];
}

export async function openBlob(key: MasterKey, id: Buffer, sealed: Buffer, where: string): Promise<Buffer> {
  if (sealed.length < 29) throw new IntegrityError(`blob ${id.toString('hex').slice(0, 16)} in ${where} is truncated`);
  const codec = sealed[0];
  let compressed: Buffer;
  try {
    compressed = unseal(key.enc, blobAad(id, codec), sealed.subarray(1), 'blob');
  } catch {
    throw new IntegrityError(`blob ${id.toString('hex').slice(0, 16)} in ${where} failed authentication (corrupted or tampered)`);
  }
  const plain = await decompress(codec, compressed);
  const check = blobId(key.mac, plain);
  if (!check.equals(id)) throw new IntegrityError(`blob ${id.toString('hex').slice(0, 16)} in ${where} does not match its id`);
  return plain;
}
