/**
 * Content ids. A blob's id is HMAC-SHA-256 of its plaintext under the repository's
 * MAC key: equal content gets one id within a repository (dedup), and ids reveal
 * nothing about content to someone without the key. Object names (packs, index
 * files, manifests) are plain SHA-256 of the stored bytes, so a name authenticates
 * the object it names.
 */
import { createHash, createHmac } from 'node:crypto';

export const ID_BYTES = 32;

export function blobId(macKey: Buffer, plaintext: Buffer): Buffer {
  return createHmac('sha256', macKey).update(plaintext).digest();
}

export function sha256(data: Buffer | Buffer[]): Buffer {
  const h = createHash('sha256');
  if (Array.isArray(data)) for (const d of data) h.update(d);
  else h.update(data);
  return h.digest();
}

export function sha256Hex(data: Buffer | Buffer[]): string {
  return sha256(data).toString('hex');
}

/** A file's checksum: SHA-256 over its ordered blob ids (each an HMAC of a chunk). */
export function fileChecksum(blobIds: string[]): string {
  const h = createHash('sha256');
  for (const id of blobIds) h.update(Buffer.from(id, 'hex'));
  return h.digest('hex');
}
