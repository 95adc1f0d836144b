/**
 * Key and prefix validation shared by every backend, so a key that one backend
 * accepts is accepted by all of them (see the key rules in `types.ts`).
 */
import { StorageError } from '../util/errors.ts';

/** S3's limit on key length, in UTF-8 bytes; applied everywhere for portability. */
const MAX_KEY_BYTES = 1024;

function invalid(what: string, value: string, why: string): StorageError {
  return new StorageError(`invalid storage ${what} ${JSON.stringify(value)}: ${why}`);
}

function checkSegments(what: string, value: string, segments: string[]): void {
  for (const s of segments) {
    if (s === '') throw invalid(what, value, 'empty path segment');
    if (s === '.' || s === '..') throw invalid(what, value, `"${s}" segment`);
  }
}

function checkCommon(what: string, value: string): void {
  if (value.startsWith('/')) throw invalid(what, value, 'must not start with "/"');
  if (value.includes('\0')) throw invalid(what, value, 'contains a NUL byte');
  if (Buffer.byteLength(value) > MAX_KEY_BYTES) throw invalid(what, value, `longer than ${MAX_KEY_BYTES} bytes`);
}

/** Throws StorageError unless `key` is a valid object key. */
export function checkKey(key: string): void {
  if (key === '') throw invalid('key', key, 'empty');
  checkCommon('key', key);
  if (key.endsWith('/')) throw invalid('key', key, 'must not end with "/"');
  checkSegments('key', key, key.split('/'));
}

/**
 * Throws StorageError unless `prefix` is a valid listing prefix: empty, or a
 * string prefix of keys such as `data/` or `snapshots/ab`.
 */
export function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  checkCommon('prefix', prefix);
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  checkSegments('prefix', prefix, body.split('/'));
}
