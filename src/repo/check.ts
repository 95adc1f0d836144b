/**
 * `repo check`: structural checks (every snapshot's blobs are indexed, every
 * indexed pack exists with its size) and, with readData, every pack is read
 * back: its name must equal its SHA-256, its header must match the index, and
 * every blob must authenticate and match its id (durability rule 4).
 * Problems are reported with the pack, and the snapshots and files they affect.
 */
import { mapLimit } from '../util/concurrency.ts';
import { listSnapshots } from './manifest.ts';
import { packIdFromBytes, packKey, parsePackHeader } from './pack.ts';
import { forEachUsedBlob, listPackObjects, readIndexView } from './packs.ts';
import type { Repository } from './repository.ts';

export interface CheckProblem {
  kind: 'missing-pack' | 'pack-size' | 'corrupt-pack' | 'missing-blob' | 'unreadable-snapshot';
  message: string;
  pack?: string;
  snapshots?: string[];
  files?: string[];
}

export interface CheckReport {
  ok: boolean;
  snapshots: number;
  packs: number;
  blobs: number;
  bytesRead: number;
  unindexedPacks: string[];
  problems: CheckProblem[];
}

export interface CheckOptions {
  readData?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function checkRepository(repo: Repository, opts: CheckOptions = {}): Promise<CheckReport> {
  const view = await readIndexView(repo);
  const objects = await listPackObjects(repo);
  const problems: CheckProblem[] = [];
  const badPacks = new Map<string, CheckProblem>();
  const blobPack = new Map<string, string>();
  for (const p of view.packs.values()) for (const b of p.blobs) blobPack.set(b.id, p.id);

  for (const [id, p] of view.packs) {
    const o = objects.get(id);
    if (!o) badPacks.set(id, { kind: 'missing-pack', pack: id, message: `pack ${id} is in the index but missing from storage` });
    else if (o.size !== p.size) badPacks.set(id, { kind: 'pack-size', pack: id, message: `pack ${id} is ${o.size} bytes, the index says ${p.size}` });
  }
  const unindexedPacks = [...objects.keys()].filter((id) => !view.packs.has(id));

  let bytesRead = 0;
  if (opts.readData) {
    const ids = [...view.packs.keys()].filter((id) => !badPacks.has(id));
    let done = 0;
    await mapLimit(ids, 2, async (id) => {
      const problem = await verifyPack(repo, id, view.packs.get(id)!.size, view.packs.get(id)!.blobs);
      bytesRead += view.packs.get(id)!.size;
      if (problem) badPacks.set(id, problem);
      opts.onProgress?.(++done, ids.length);
    });
  }

  const snapshots = await listSnapshots(repo);
  for (const s of snapshots) {
    const missing: string[] = [];
    try {
      await forEachUsedBlob(repo, s, (blob, file) => {
        const pack = blobPack.get(blob);
        if (pack === undefined) missing.push(file ?? '(tree)');
        const bad = pack && badPacks.get(pack);
        if (bad) {
          bad.snapshots ??= [];
          if (!bad.snapshots.includes(s.id)) bad.snapshots.push(s.id);
          bad.files ??= [];
          if (file && bad.files.length < 20 && !bad.files.includes(file)) bad.files.push(file);
        }
      });
    } catch (e) {
      problems.push({ kind: 'unreadable-snapshot', snapshots: [s.id], message: `snapshot ${s.id.slice(0, 12)}: its tree cannot be read: ${(e as Error).message}` });
      continue;
    }
    if (missing.length) {
      problems.push({
        kind: 'missing-blob',
        snapshots: [s.id],
        files: [...new Set(missing)].slice(0, 20),
        message: `snapshot ${s.id.slice(0, 12)} names ${missing.length} blobs that are in no index (files: ${[...new Set(missing)].slice(0, 5).join(', ')})`,
      });
    }
  }
  for (const p of badPacks.values()) {
    const affected = p.snapshots?.length ? `; affects snapshots ${p.snapshots.map((s) => s.slice(0, 12)).join(', ')}` : '; no snapshot uses it';
    const files = p.files?.length ? ` (files: ${p.files.slice(0, 5).join(', ')})` : '';
    problems.push({ ...p, message: p.message + affected + files });
  }
  return {
    ok: problems.length === 0,
    snapshots: snapshots.length,
    packs: view.packs.size,
    blobs: blobPack.size,
    bytesRead,
    unindexedPacks,
    problems,
  };
}

async function verifyPack(repo: Repository, id: string, size: number, indexed: { id: string; offset: number; length: number; rawLength: number }[]): Promise<CheckProblem | undefined> {
  const where = id.slice(0, 16);
  let data: Buffer;
  try {
    data = await repo.storage.get(packKey(id));
  } catch (e) {
    return { kind: 'missing-pack', pack: id, message: `pack ${id} cannot be read: ${(e as Error).message}` };
  }
  const reasons: string[] = [];
  try {
    if (packIdFromBytes(data, where) !== id) reasons.push('its header does not match its name (SHA-256)');
    const entries = parsePackHeader(repo.key, data, size, where);
    const byId = new Map(entries.map((e) => [e.id, e]));
    for (const b of indexed) {
      const e = byId.get(b.id);
      if (!e || e.offset !== b.offset || e.length !== b.length) reasons.push(`blob ${b.id.slice(0, 16)} is not where the index says`);
    }
  } catch (e) {
    reasons.push((e as Error).message);
  }
  let bad = 0;
  await mapLimit(indexed, 64, async (b) => {
    try {
      await repo.codec.open(Buffer.from(b.id, 'hex'), data.subarray(b.offset, b.offset + b.length), b.rawLength, `pack ${where}`);
    } catch {
      bad++;
    }
  });
  if (bad) reasons.push(`${bad} of ${indexed.length} blobs fail authentication`);
  if (!reasons.length) return undefined;
  return { kind: 'corrupt-pack', pack: id, message: `pack ${id} is corrupted: ${reasons.join('; ')}` };
}
