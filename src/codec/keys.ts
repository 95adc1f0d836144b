/**
 * Keys. A repository has one random master key (64 bytes: 32 for AES-256-GCM,
 * 32 for the keyed hash that names blobs). It is never stored in clear: each key slot
 * holds the master key sealed under a wrapping key derived from either
 *   - a passphrase, with scrypt (slow on purpose: N=2^15, r=8, p=1 ~ 0.1 s), or
 *   - a key file (32 random bytes), with HKDF-SHA-256 (microseconds), for
 *     commands that run once per WAL segment.
 * Adding or removing a slot rotates credentials without rewriting any data.
 */
import { hkdfSync, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { seal, unseal } from './encrypt.ts';
import { ConfigError, IntegrityError } from '../util/errors.ts';

export const MASTER_KEY_BYTES = 64;

export interface MasterKey {
  /** AES-256-GCM key for blobs and objects. */
  enc: Buffer;
  /** Key of the blob ids (codec/hash.ts) and the config MAC. */
  mac: Buffer;
}

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };

export interface KeySlot {
  id: string;
  kind: 'passphrase' | 'keyfile';
  created: string;
  host: string;
  user: string;
  salt: string; // base64
  scrypt?: ScryptParams;
  /** base64 of nonce || sealed master key || tag */
  wrapped: string;
}

export type Credential = { kind: 'passphrase'; passphrase: string } | { kind: 'keyfile'; material: Buffer; path: string };

export function splitMaster(raw: Buffer): MasterKey {
  if (raw.length !== MASTER_KEY_BYTES) throw new IntegrityError('master key has the wrong length');
  return { enc: raw.subarray(0, 32), mac: raw.subarray(32, 64) };
}

export function newMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_BYTES);
}

function scrypt(pass: string, salt: Buffer, p: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(pass.normalize('NFC'), salt, 32, { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + (1 << 20) }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

async function wrappingKey(cred: Credential, salt: Buffer, params?: ScryptParams): Promise<Buffer> {
  if (cred.kind === 'passphrase') return scrypt(cred.passphrase, salt, params ?? DEFAULT_SCRYPT);
  return Buffer.from(hkdfSync('sha256', cred.material, salt, 'ferry key slot v1', 32));
}

const SLOT_AAD = Buffer.from('ferry-key-slot-v1');

export async function makeSlot(
  master: Buffer,
  cred: Credential,
  meta: { id: string; created: string; host: string; user: string },
  params: ScryptParams = DEFAULT_SCRYPT,
): Promise<KeySlot> {
  const salt = randomBytes(32);
  const wk = await wrappingKey(cred, salt, params);
  return {
    ...meta,
    kind: cred.kind,
    salt: salt.toString('base64'),
    ...(cred.kind === 'passphrase' ? { scrypt: params } : {}),
    wrapped: seal(wk, SLOT_AAD, master).toString('base64'),
  };
}

/** Returns the master key if the credential opens this slot, undefined otherwise. */
export async function openSlot(slot: KeySlot, cred: Credential): Promise<Buffer | undefined> {
  if (slot.kind !== cred.kind) return undefined;
  const wk = await wrappingKey(cred, Buffer.from(slot.salt, 'base64'), slot.scrypt);
  try {
    return unseal(wk, SLOT_AAD, Buffer.from(slot.wrapped, 'base64'), 'key slot');
  } catch {
    return undefined;
  }
}

const KEYFILE_PREFIX = 'ferry-key-v1:';

export function newKeyFileText(): string {
  return `${KEYFILE_PREFIX}${randomBytes(32).toString('base64')}\n`;
}

/** Reads a key file: `ferry-key-v1:<base64>` or at least 32 bytes of raw key material. */
export function readKeyFile(path: string): Credential {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new ConfigError(`cannot read key file ${path}: ${(e as Error).message}`);
  }
  const st = statSync(path);
  if ((st.mode & 0o077) !== 0) {
    throw new ConfigError(`key file ${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)})`, {
      hint: `chmod 600 ${path}`,
    });
  }
  const text = buf.toString('utf8').trim();
  let material: Buffer;
  if (text.startsWith(KEYFILE_PREFIX)) material = Buffer.from(text.slice(KEYFILE_PREFIX.length), 'base64');
  else material = buf;
  if (material.length < 32) throw new ConfigError(`key file ${path} holds fewer than 32 bytes of key material`);
  return { kind: 'keyfile', material, path };
}

export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
