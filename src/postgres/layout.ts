/**
 * What in a PostgreSQL data directory is backed up, and how it is chunked.
 * Mirrors what PostgreSQL's own base backup leaves out: WAL (archived separately),
 * the postmaster's runtime files, temporary and statistics scratch space, and
 * replication slots (they belong to the old server).
 */
import { FixedChunker } from '../repo/chunker.ts';
import type { Chunker } from '../repo/chunker.ts';

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
 * snapshot after a small change stores only the changed chunks. 64 KiB (8 pages)
 * keeps the index small (16k entries per GiB) while changed runs stay small.
 */
export const PAGE_CHUNK = 64 * 1024;

export function chunkerFor(rel: string, fallback: () => Chunker): Chunker {
  if (rel.startsWith('base/') || rel.startsWith('global/') || rel.startsWith('pg_tblspc/') || rel.startsWith('pg_xact/') || rel.startsWith('pg_multixact/')) {
    return new FixedChunker(PAGE_CHUNK);
  }
  return fallback();
}
