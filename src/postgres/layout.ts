/**
 * What in a PostgreSQL data directory is backed up, and how it is chunked.
 * Mirrors what PostgreSQL's own base backup leaves out: WAL (archived separately),
 * the postmaster's runtime files, temporary and statistics scratch space, and
 * replication slots (they belong to the old server).
 */
import { FixedChunker } from '../repo/chunker.ts';
import type { Chunker } from '../repo/chunker.ts';
import { BLCKSZ } from './pagechecksum.ts';

/** Directories whose contents are skipped (the directory itself is kept, empty). */
const EMPTY_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);
/** Files skipped at the top level. */
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'backup_label.old', 'tablespace_map', 'tablespace_map.old', 'recovery.signal', 'standby.signal', 'current_logfiles']);

export function excludeFromSnapshot(rel: string, isDir: boolean): boolean {
  const parts = rel.split('/');
  if (parts.length >= 2 && EMPTY_DIRS.has(parts[0])) return true;
  if (parts.length === 1 && !isDir && SKIP_FILES.has(rel)) return true;
  const name = parts[parts.length - 1];
  if (name.startsWith('pgsql_tmp')) return true; // temporary files and directories
  if (name === 'pg_internal.init') return true; // relcache init files, rebuilt at start
  return false;
}

/** Relation data files: base/<db>/<filenode>[_fsm|_vm|_init][.<segno>], global/..., tablespaces. */
const RELATION = /^(?:base\/\d+|global|pg_tblspc\/\d+\/[^/]+\/\d+)\/(\d+)(?:_(?:fsm|vm|init))?(?:\.(\d+))?$/;

/** The segment number of a relation file (its `.N` suffix), or undefined if `rel` is not one. */
export function relationSegment(rel: string): number | undefined {
  const m = RELATION.exec(rel);
  if (!m) return undefined;
  return m[2] ? Number(m[2]) : 0;
}

/**
 * True for a relation's main fork (its table or index pages, every change to which is
 * WAL-logged and stamps the page's LSN); false for the free space map (not WAL-logged),
 * the visibility map and init forks, and for anything not a relation file.
 */
export function isMainFork(rel: string): boolean {
  const m = RELATION.exec(rel);
  return !!m && !/_(?:fsm|vm|init)(?:\.\d+)?$/.test(rel);
}

/** True for relation forks that hold checksummed pages (main, fsm, vm, init). */
export function isRelationFile(rel: string): boolean {
  return RELATION.test(rel);
}

/**
 * Files that change in place page by page get fixed, page-aligned chunks, so a
 * snapshot after a small change stores only the changed chunks. 128 KiB (16 pages, zstd's
 * largest block) keeps the index small (8k entries per GiB) while changed runs stay small.
 * Most of a snapshot's cost outside zstd is paid per chunk (the trip to a codec worker, the
 * cipher set-up, the index entry): a full snapshot of pgbench scale 200 took 5.6 s with
 * 64 KiB chunks and 4.75 s with these (bench/README.md).
 */
export const PAGE_CHUNK = 128 * 1024;

/**
 * The chunker for a file of a data directory. `parentLengths`: the chunk lengths of the
 * file's copy in the parent snapshot. A copy cut into fixed page chunks of another size (64
 * KiB, before Ferry moved to 128) is cut the same way again, so its unchanged chunks are
 * still recognised and the first snapshot after an upgrade does not store every page again.
 */
export function chunkerFor(rel: string, fallback: () => Chunker, parentLengths?: number[]): Chunker {
  if (rel.startsWith('base/') || rel.startsWith('global/') || rel.startsWith('pg_tblspc/') || rel.startsWith('pg_xact/') || rel.startsWith('pg_multixact/')) {
    return new FixedChunker(fixedSizeOf(parentLengths) ?? PAGE_CHUNK);
  }
  return fallback();
}

/** The size of fixed page chunks that `lengths` were cut with (all but the last equal, whole pages), if any. */
function fixedSizeOf(lengths: number[] | undefined): number | undefined {
  if (!lengths || lengths.length < 2) return undefined;
  const size = lengths[0];
  if (size % BLCKSZ !== 0 || size > 1 << 20) return undefined;
  for (let i = 1; i < lengths.length - 1; i++) if (lengths[i] !== size) return undefined;
  return lengths[lengths.length - 1] <= size ? size : undefined;
}
