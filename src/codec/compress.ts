/**
 * Compression stage: zstd through the native @mongodb-js/zstd binding, which runs
 * on libuv's thread pool, so several calls in flight keep both cores busy without
 * blocking the event loop.
 *
 * Codec ids are stored in each blob's header and are never reused:
 *   0x01 = stored (no compression), 0x02 = zstd.
 */
import { compress as zstdCompress, decompress as zstdDecompress } from '@mongodb-js/zstd';
import { IntegrityError } from '../util/errors.ts';

export const CODEC_NONE = 0x01;
export const CODEC_ZSTD = 0x02;

export const DEFAULT_LEVEL = 3;

export interface Compressed {
  codec: number;
  data: Buffer;
}

/** Compress, falling back to stored bytes when zstd does not help (already-compressed data). */
export async function compress(plain: Buffer, level: number = DEFAULT_LEVEL): Promise<Compressed> {
  if (plain.length < 64 || level <= 0) return { codec: CODEC_NONE, data: plain };
  const z = await zstdCompress(plain, level);
  if (z.length >= plain.length) return { codec: CODEC_NONE, data: plain };
  return { codec: CODEC_ZSTD, data: z };
}

export async function decompress(codec: number, data: Buffer): Promise<Buffer> {
  switch (codec) {
    case CODEC_NONE:
      return data;
    case CODEC_ZSTD:
      return zstdDecompress(data);
    default:
      throw new IntegrityError(`unknown codec id 0x${codec.toString(16)} in blob header`, {
        hint: 'the repository may have been written by a newer Ferry; upgrade Ferry',
      });
  }
}
