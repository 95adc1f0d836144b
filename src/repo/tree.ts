/**
 * The file tree of a snapshot: one node per path, in sorted walk order, stored as
 * JSON Lines cut into tree blobs. Paths are relative and POSIX-style; the root is "".
 */
import { StringDecoder } from 'node:string_decoder';
import type { Repository } from './repository.ts';
import type { BlobSaver } from './saver.ts';
import { IntegrityError } from '../util/errors.ts';

export interface TreeNode {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  /** Modification time in nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  size: number;
  uid: number;
  gid: number;
  ino: number;
  /** Symlink target. */
  target?: string;
  /** Blob ids (hex) of a file's content, in order. */
  blobs?: string[];
  /** Plaintext length of each blob (so ranges can be located without the index). */
  lengths?: number[];
  /** SHA-256 over the blob ids: equal iff the content is equal. */
  checksum?: string;
  /** Kind-specific extras (e.g. page checksum failures). */
  extra?: Record<string, unknown>;
}

export async function saveTree(saver: BlobSaver, repo: Repository, nodes: TreeNode[]): Promise<string[]> {
  const chunker = repo.newChunker();
  const ids: string[] = [];
  const saves: Promise<string>[] = [];
  let batch: string[] = [];
  let batchLen = 0;
  const pushBatch = () => {
    for (const c of chunker.push(Buffer.from(batch.join('')))) saves.push(saver.save('tree', c));
    batch = [];
    batchLen = 0;
  };
  for (const n of nodes) {
    const line = JSON.stringify(n) + '\n';
    batch.push(line);
    batchLen += line.length;
    if (batchLen > 4 << 20) pushBatch();
  }
  pushBatch();
  for (const c of chunker.finish()) saves.push(saver.save('tree', c));
  for (const s of saves) ids.push(await s);
  return ids;
}

export async function* readTree(repo: Repository, treeIds: string[]): AsyncGenerator<TreeNode> {
  let rest = '';
  const dec = new StringDecoder('utf8');
  for (const id of treeIds) {
    const text = rest + dec.write(await repo.loadBlob(id));
    const lines = text.split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) if (l) yield JSON.parse(l) as TreeNode;
  }
  rest += dec.end();
  if (rest.trim()) throw new IntegrityError('snapshot tree ends in the middle of a line');
}

export async function loadTree(repo: Repository, treeIds: string[]): Promise<TreeNode[]> {
  const out: TreeNode[] = [];
  for await (const n of readTree(repo, treeIds)) out.push(n);
  return out;
}
