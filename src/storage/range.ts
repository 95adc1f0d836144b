/**
 * Byte-range arithmetic for `get` with `GetOptions`, shared by every backend so
 * they all clamp ranges the same way.
 *
 * Contract: a range never fails because of the object's size. A non-negative
 * offset past the end yields an empty slice; a negative offset larger than the
 * object yields the whole object; a length running past the end is cut short.
 */
import { StorageError } from '../util/errors.ts';
import type { GetOptions } from './types.ts';

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** End, exclusive. `end - start` is the slice length (possibly 0). */
  end: number;
}

/** Throws StorageError when offset/length are not integers or length is negative. */
export function checkRange(opts: GetOptions | undefined): void {
  const offset = opts?.offset;
  const length = opts?.length;
  if (offset !== undefined && !Number.isSafeInteger(offset)) {
    throw new StorageError(`invalid read offset ${offset}: must be an integer`);
  }
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new StorageError(`invalid read length ${length}: must be a non-negative integer`);
  }
}

/** The slice of an object of `size` bytes that `opts` selects. */
export function resolveRange(size: number, opts: GetOptions | undefined): ByteRange {
  checkRange(opts);
  const offset = opts?.offset ?? 0;
  const start = offset >= 0 ? Math.min(offset, size) : Math.max(0, size + offset);
  const end = opts?.length === undefined ? size : Math.min(size, start + opts.length);
  return { start, end };
}

/** True when `opts` selects something other than the whole object. */
export function isRanged(opts: GetOptions | undefined): boolean {
  return (opts?.offset !== undefined && opts.offset !== 0) || opts?.length !== undefined;
}
