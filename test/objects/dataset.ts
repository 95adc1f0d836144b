/**
 * Object sets for the objects tests and bench: N random files under a few
 * "folders", then a round of deletions, overwrites and additions; digests of
 * what the source held at each step, to compare restores with.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { walkTree } from '../../src/repo/backup.ts';
import type { ObjectSource } from '../../src/objects/source.ts';
import { mapLimit } from '../../src/util/concurrency.ts';

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface DataSet {
  /** key -> sha256 of the content, as the source holds it now. */
  state: Map<string, string>;
}

export function keyOf(prefix: string, i: number): string {
  return `${prefix}d${i % 10}/f${String(i).padStart(5, '0')}.bin`;
}

export async function populate(source: ObjectSource, prefix: string, n: number, minSize: number, maxSize: number): Promise<DataSet> {
  const state = new Map<string, string>();
  await mapLimit(
    Array.from({ length: n }, (_, i) => i),
    8,
    async (i) => {
      const data = randomBytes(randomInt(minSize, maxSize + 1));
      const key = keyOf(prefix, i);
      await source.write(key, data);
      state.set(key, sha(data));
    },
  );
  return { state };
}

export interface Mutation {
  deleted: string[];
  overwritten: string[];
  added: string[];
}

/** Deletes `k`, overwrites `k` and adds `k` objects; `remove` deletes one object of the source. */
export async function mutate(set: DataSet, source: ObjectSource, remove: (key: string) => Promise<void>, prefix: string, k: number, minSize: number, maxSize: number): Promise<Mutation> {
  const keys = [...set.state.keys()].sort();
  const step = Math.floor(keys.length / (2 * k));
  const deleted = Array.from({ length: k }, (_, i) => keys[2 * i * step]);
  const overwritten = Array.from({ length: k }, (_, i) => keys[(2 * i + 1) * step]);
  const added = Array.from({ length: k }, (_, i) => keyOf(prefix, keys.length + 1000 + i));
  await mapLimit(deleted, 8, async (key) => {
    await remove(key);
    set.state.delete(key);
  });
  await mapLimit([...overwritten, ...added], 8, async (key) => {
    const data = randomBytes(randomInt(minSize, maxSize + 1));
    await source.write(key, data);
    set.state.set(key, sha(data));
  });
  return { deleted, overwritten, added };
}

/** key -> sha256 of every file under `dir`, keys relative to it. */
export async function dirDigests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const files = (await walkTree(dir)).filter((n) => n.type === 'file');
  await mapLimit(files, 8, async (n) => {
    out.set(n.path, sha(await readFile(join(dir, n.path))));
  });
  return out;
}

export function only(m: Map<string, string>, prefix: string): Map<string, string> {
  return new Map([...m].filter(([k]) => k.startsWith(prefix)).sort());
}
