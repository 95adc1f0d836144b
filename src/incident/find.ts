/**
 * `incident find`: the committed transactions in archived WAL that deleted,
 * updated, truncated or dropped many rows, and the restore target just before the
 * worst of them.
 *
 *   1. choose the WAL to read (`chooseSegments`, pure): segments archived since
 *      `since` (a segment stored before `since` holds only older records), plus the
 *      one before them so transactions that began there are counted whole;
 *   2. fetch them from the repository into a private temp directory, a batch at a
 *      time, and decode them with `pg_waldump` (TZ=UTC), folding its lines into
 *      committed transactions (waldump.ts); decoding stops at the first commit
 *      later than `until`;
 *   3. name the relation files and OIDs through the live database (names.ts);
 *   4. describe each transaction per table and operation (`describeTx`, pure) and
 *      keep those that pass the filters (`selectIncidents`, pure).
 *
 * Row counts are what the scanned WAL shows: a DELETE or UPDATE writes one record
 * per row. TRUNCATE and DROP write no per-row records, so their `rows` is null and
 * they always count as incidents.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Repository } from '../repo/repository.ts';
import { pgBinDir } from '../postgres/binaries.ts';
import { fetchWal, listWal, readLongPageHeader, type WalObject } from '../postgres/wal.ts';
import { formatLsn, parseWalName } from '../postgres/walname.ts';
import { ConfigError, PostgresError, UsageError } from '../util/errors.ts';
import type { NameResolver, RelName } from './names.ts';
import { parseRelKey, relKey, WalTracker, type CommittedTx, type RelFile } from './waldump.ts';

export const OPS = ['delete', 'update', 'truncate', 'drop'] as const;
export type IncidentOp = (typeof OPS)[number];

export interface TableChange {
  /** `schema.table`, or `rel <tablespace>/<database>/<filenode>` when the live database cannot name it. */
  name: string;
  op: IncidentOp;
  /**
   * Rows the WAL shows. For TRUNCATE and DROP the WAL does not say how many rows went:
   * exact when the table's file was created within the scanned WAL, else null.
   */
  rows: number | null;
  /** The database, when the live cluster could name it. */
  database?: string;
}

export interface Incident {
  xid: number;
  /** LSN of the commit record. */
  lsn: string;
  commitTime: string;
  timeline: number;
  subxacts: number[];
  tables: TableChange[];
}

export interface Proposal {
  xid: number;
  commitTime: string;
  /** The restore that stops just before the transaction commits. */
  command: string;
  reason: string;
}

/** pg_type's relfilenode (mapped; 1247 unless pg_type was rewritten). */
const PG_TYPE_NODE = 1247;
/** XLOG_PAGE_MAGIC per PostgreSQL major version. */
const WAL_MAGIC_MAJOR: Record<number, number> = { 0xd106: 13, 0xd10d: 14, 0xd110: 15, 0xd113: 16, 0xd116: 17 };
/** Below FirstNormalObjectId, relation files belong to the system catalogs. */
const FIRST_NORMAL_OID = 16384;
const SYSTEM_SCHEMAS = new Set(['pg_catalog', 'pg_toast', 'information_schema']);
const TABLE_KINDS = new Set(['r', 'p', 'm']);

export const DEFAULT_MIN_ROWS = 100;
/** Without --since, WAL archived in the last day is scanned. */
export const DEFAULT_WINDOW_MS = 24 * 3600 * 1000;
/** Slack for clocks (database host vs storage mtimes) when choosing WAL by time. */
export const CLOCK_SLACK_MS = 5 * 60 * 1000;

// ---- describing transactions (pure) ---------------------------------------------

export interface Names {
  files: ReadonlyMap<string, RelName>;
  /** Keyed by `db/oid`. */
  oids: ReadonlyMap<string, RelName>;
  /** Database names by OID. */
  databases?: ReadonlyMap<number, string>;
  /** Files a later TRUNCATE or rewrite in the scan replaced, named through that transaction (see `withFormerFiles`). */
  former?: ReadonlyMap<string, RelName>;
}

/**
 * Names for files that no longer belong to their relation. A transaction that
 * replaced or dropped a relation's files locked the relation by OID; a dropped
 * file whose number equals a locked OID of its database was that relation's file
 * (a relation's first file is numbered like its OID), so a DELETE before a later
 * TRUNCATE of the same table is still named.
 */
export function withFormerFiles(txs: readonly CommittedTx[], names: Names): Names {
  const former = new Map(names.former ?? []);
  for (const t of txs) {
    for (const f of t.dropped) {
      if (!t.lockedOids.some((l) => l.db === f.db && l.oid === f.node)) continue;
      const n = names.oids.get(`${f.db}/${f.node}`);
      if (n && !former.has(relKey(f))) former.set(relKey(f), n);
    }
  }
  return { ...names, former };
}

export interface NodeKinds {
  /** Relation files seen with index records in the scan. */
  indexNodes: ReadonlySet<string>;
  /** Relation files seen with heap records in the scan. */
  heapNodes?: ReadonlySet<string>;
}

function fallbackName(f: RelFile): string {
  return `rel ${relKey(f)}`;
}

/** A user relation's display name, or undefined for catalogs, toast and indexes. */
function userName(n: RelName | undefined): string | undefined {
  if (!n || SYSTEM_SCHEMAS.has(n.schema) || !TABLE_KINDS.has(n.kind)) return undefined;
  return `${n.schema}.${n.name}`;
}

/** The name a relation file is shown under, or undefined when it is not a user table. */
function fileName(f: RelFile, names: Names, kinds: NodeKinds): string | undefined {
  const n = names.files.get(relKey(f)) ?? names.former?.get(relKey(f));
  if (n) return userName(n);
  if (f.node < FIRST_NORMAL_OID || f.db === 0 || kinds.indexNodes.has(relKey(f))) return undefined;
  return fallbackName(f);
}

function oidName(db: number, oid: number, names: Names): string | undefined {
  return userName(names.oids.get(`${db}/${oid}`));
}

/**
 * What a committed transaction did, per table and operation:
 * - delete / update: rows counted from heap records;
 * - truncate: Heap TRUNCATE records (wal_level = logical) name the tables by OID;
 *   otherwise a transaction that dropped relation files and created new ones that it
 *   left empty truncated the tables those new files belong to (VACUUM FULL, CLUSTER
 *   and rewrites fill their new files, so they do not match). Storage TRUNCATE
 *   records are not incidents: VACUUM writes them when it cuts empty pages off a
 *   table's end (with a transaction id, for its lock), and TRUNCATE writes one only
 *   for a table created in the same transaction;
 * - drop: the transaction dropped relation files and deleted pg_class and pg_type
 *   rows (a table's row type goes with it; an index or a sequence has none). The
 *   dropped tables no longer exist, so they show as `rel spc/db/node`: the dropped
 *   files the scan saw heap records for, else every dropped file not seen with
 *   index records (indexes and toast of a table the scan never wrote to show too).
 */
export function describeTx(tx: CommittedTx, names: Names, kinds: NodeKinds): TableChange[] {
  const out: TableChange[] = [];
  const add = (db: number, name: string | undefined, op: IncidentOp, rows: number | null) => {
    if (!name) return;
    const database = names.databases?.get(db);
    const same = out.find((c) => c.name === name && c.op === op && c.database === database);
    if (same) {
      if (same.rows !== null && rows !== null) same.rows += rows;
    } else out.push({ name, op, rows, ...(database !== undefined ? { database } : {}) });
  };
  for (const [k, c] of tx.rows) {
    const f = parseRelKey(k);
    const name = fileName(f, names, kinds);
    if (c.deleted) add(f.db, name, 'delete', c.deleted);
    if (c.updated) add(f.db, name, 'update', c.updated);
  }
  const lockDb = (oid: number): number => tx.lockedOids.find((l) => l.oid === oid)?.db ?? 0;
  // Rows a truncated table held, when its old file (numbered like its OID) was created
  // within the scanned WAL; otherwise unknown.
  const oldRows = (db: number, oid: number | undefined): number | null => {
    const f = oid === undefined ? undefined : tx.dropped.find((d) => d.db === db && d.node === oid);
    return (f && tx.droppedRows.get(relKey(f))) ?? (f && tx.droppedRows.has(relKey(f)) ? 0 : null);
  };
  let truncated = false;
  for (const t of tx.truncatedOids) {
    const db = t.db || lockDb(t.oid);
    add(db, oidName(db, t.oid, names) ?? `rel oid ${db}/${t.oid}`, 'truncate', oldRows(db, t.oid));
    truncated = true;
  }
  if (!truncated && tx.dropped.length > 0 && tx.created.length > 0) {
    // New files for old ones: a TRUNCATE leaves the table's new file empty, a rewrite
    // (VACUUM FULL, CLUSTER, ALTER TABLE) fills it. Toast and index files are not tables.
    const empty = new Set(tx.createdEmpty.map(relKey));
    const before = out.length;
    for (const f of tx.created) {
      const n = names.files.get(relKey(f));
      if (n && empty.has(relKey(f))) add(f.db, userName(n), 'truncate', oldRows(f.db, n.oid));
    }
    // Files no longer current (truncated again, or dropped since): a relation's heap is
    // the first file it gets, so an empty first file is a TRUNCATE; name the tables it locked.
    const first = tx.created[0];
    if (out.length === before && !names.files.has(relKey(first)) && empty.has(relKey(first))) {
      for (const l of tx.lockedOids) add(l.db, oidName(l.db, l.oid, names), 'truncate', oldRows(l.db, l.oid));
      if (out.length === before) add(first.db, fileName(first, names, kinds), 'truncate', null);
    }
  }
  // A dropped table takes its row type and array type with it (two pg_type rows);
  // DROP INDEX and DROP SEQUENCE delete none. Transactions that created as many files
  // as they dropped replaced files (TRUNCATE, rewrites); their transient tables' rows
  // are deleted too, so they are not drops.
  let typeDeletes = 0;
  for (const [k, c] of tx.rows) if (parseRelKey(k).node === PG_TYPE_NODE) typeDeletes += c.deleted;
  if (tx.dropped.length > tx.created.length && tx.catalogDeletes > 0 && typeDeletes > 0) {
    const createdKeys = new Set(tx.created.map(relKey));
    const stillThere = new Set(tx.lockedOids.filter((l) => names.oids.has(`${l.db}/${l.oid}`)).map((l) => `${l.db}/${l.oid}`));
    const gone = tx.dropped.filter(
      (f) => !createdKeys.has(relKey(f)) && !names.files.has(relKey(f)) && !kinds.indexNodes.has(relKey(f)) && !stillThere.has(`${f.db}/${f.node}`),
    );
    // Files the scan saw heap records for are tables (or their toast). Otherwise, for one
    // dropped table, its heap is its lowest-numbered file (it is created, and rewritten, first).
    const heaps = gone.filter((f) => kinds.heapNodes?.has(relKey(f)));
    const tables = Math.round(typeDeletes / 2);
    const shown = heaps.length ? heaps : tables <= 1 ? [...gone].sort((a, b) => a.node - b.node).slice(0, 1) : gone;
    for (const f of shown) add(f.db, fileName(f, names, kinds), 'drop', tx.droppedRows.get(relKey(f)) ?? null);
  }
  return out.sort((a, b) => rank(b) - rank(a) || a.name.localeCompare(b.name));
}

function rank(c: TableChange): number {
  return c.rows === null ? Number.MAX_SAFE_INTEGER : c.rows;
}

/** How bad a transaction is: TRUNCATE / DROP first, then by rows removed or changed. */
export function severity(i: Incident): number {
  return i.tables.reduce((s, c) => Math.min(Number.MAX_SAFE_INTEGER, s + rank(c)), 0);
}

export interface IncidentFilter {
  /** `schema.table` */
  table?: string;
  op?: IncidentOp;
  since?: number;
  until?: number;
  minRows: number;
}

/** Normalises a --table argument to `schema.table` (default schema public). */
export function qualifyTable(t: string): string {
  const s = t.trim();
  if (!/^[^.\s]+(\.[^.\s]+)?$/.test(s)) throw new UsageError(`--table takes SCHEMA.TABLE or TABLE, got "${t}"`);
  return s.includes('.') ? s : `public.${s}`;
}

/** A change counts when it removed or changed at least minRows rows, or is a TRUNCATE or DROP of unknown size. */
function counts(c: TableChange, f: IncidentFilter): boolean {
  return (c.rows === null || c.rows >= f.minRows) && (!f.op || c.op === f.op) && (!f.table || c.name === f.table);
}

/** Keeps the transactions with a change that counts, in commit order. */
export function selectIncidents(all: readonly (Incident & { commitMs: number })[], f: IncidentFilter): Incident[] {
  return all
    .filter((i) => (f.since === undefined || i.commitMs >= f.since) && (f.until === undefined || i.commitMs <= f.until))
    .filter((i) => i.tables.some((c) => counts(c, f)))
    .sort((a, b) => a.commitMs - b.commitMs || a.xid - b.xid)
    .map((i) => ({ xid: i.xid, lsn: i.lsn, commitTime: i.commitTime, timeline: i.timeline, subxacts: i.subxacts, tables: i.tables }));
}

/** The restore target just before the worst incident (the latest among equals). */
export function propose(incidents: readonly Incident[]): Proposal | undefined {
  let worst: Incident | undefined;
  for (const i of incidents) if (!worst || severity(i) >= severity(worst)) worst = i;
  if (!worst) return undefined;
  const what = worst.tables.map((c) => `${c.op} ${c.name}${c.rows === null ? '' : ` (${c.rows} rows)`}`).join(', ');
  return {
    xid: worst.xid,
    commitTime: worst.commitTime,
    command: `ferry pg restore --target-dir DIR --before-xid ${worst.xid} --start --port PORT`,
    reason: `transaction ${worst.xid} committed at ${worst.commitTime}: ${what}`,
  };
}

// ---- choosing WAL (pure) -------------------------------------------------------------

/**
 * The WAL files to decode for commits at or after `since`: per timeline, the
 * segments stored at or after `since - slack` (and `.partial` files whose complete
 * segment is not stored), plus the segment just before the first of them.
 */
export function chooseSegments(objects: readonly WalObject[], since: number, slackMs = CLOCK_SLACK_MS): WalObject[] {
  const out: WalObject[] = [];
  const byTl = new Map<number, WalObject[]>();
  const full = new Set(objects.filter((o) => o.kind === 'segment').map((o) => `${o.timeline}:${o.name}`));
  for (const o of objects) {
    if (o.kind === 'partial' && full.has(`${o.timeline}:${o.name.replace(/\.partial$/, '')}`)) continue;
    if (o.kind !== 'segment' && o.kind !== 'partial') continue;
    const l = byTl.get(o.timeline) ?? [];
    l.push(o);
    byTl.set(o.timeline, l);
  }
  for (const tl of [...byTl.keys()].sort((a, b) => a - b)) {
    const l = byTl.get(tl)!.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const first = l.findIndex((o) => o.mtime >= since - slackMs);
    if (first < 0) continue;
    out.push(...l.slice(Math.max(0, first - 1)));
  }
  return out;
}

// ---- scanning ----------------------------------------------------------------------

export interface FindOptions {
  filter: IncidentFilter;
  /** Commits at or after this are decoded (ms); the default window ends now. */
  since: number;
  /** Stop decoding after the first commit later than this (ms). */
  until?: number;
  timeline?: number;
  names: NameResolver;
  /** Segments per pg_waldump run (each batch is held in the temp directory). */
  batch?: number;
  binDir?: string;
  tmpRoot?: string;
  onProgress?: (done: number, total: number) => void;
  warn?: (line: string) => void;
}

export interface FindResult {
  scanned: {
    segments: number;
    firstSegment?: string;
    lastSegment?: string;
    since: string;
    until?: string;
    records: number;
    commits: number;
  };
  transactions: Incident[];
  proposal?: Proposal;
}

interface Run {
  timeline: number;
  segments: WalObject[];
  segnos: bigint[];
}

/** Splits the chosen files into runs of consecutive segments of one timeline. */
function runsOf(objects: readonly WalObject[], segSize: number): Run[] {
  const runs: Run[] = [];
  for (const o of objects) {
    const segno = parseWalName(o.name, segSize).segno!;
    const last = runs.at(-1);
    if (last && last.timeline === o.timeline && last.segnos.at(-1)! + 1n === segno) {
      last.segments.push(o);
      last.segnos.push(segno);
    } else runs.push({ timeline: o.timeline, segments: [o], segnos: [segno] });
  }
  return runs;
}

function fileNameOf(o: WalObject): string {
  return o.name.replace(/\.partial$/, '');
}

export async function findIncidents(repo: Repository, opts: FindOptions): Promise<FindResult> {
  const warn = opts.warn ?? (() => undefined);
  let objects = await listWal(repo.storage, opts.timeline !== undefined ? { timeline: opts.timeline } : {});
  if (objects.length === 0) throw new ConfigError(`there is no archived WAL in ${repo.location}`, { hint: 'set archive_command to `ferry wal push %p`' });
  objects = chooseSegments(objects, opts.since);
  const scanned: FindResult['scanned'] = {
    segments: objects.length,
    firstSegment: objects[0]?.name,
    lastSegment: objects.at(-1)?.name,
    since: new Date(opts.since).toISOString(),
    ...(opts.until !== undefined ? { until: new Date(opts.until).toISOString() } : {}),
    records: 0,
    commits: 0,
  };
  if (objects.length === 0) return { scanned, transactions: [] };

  const dir = await mkdtemp(join(opts.tmpRoot ?? tmpdir(), 'ferry-incident-'));
  const all: (Incident & { commitMs: number })[] = [];
  const seen = new Set<string>();
  const stopAfter = opts.until !== undefined ? opts.until + CLOCK_SLACK_MS : undefined;
  try {
    const firstData = await fetchWal(repo, objects[0].name);
    const header = readLongPageHeader(firstData);
    const segSize = header?.segmentSize ?? 16 * 1024 * 1024;
    // pg_waldump reads only its own major version's WAL: pick the binaries by the page magic.
    const binDir = opts.binDir ?? pgBinDir(header ? WAL_MAGIC_MAJOR[header.magic] : undefined);
    const prefetched = new Map([[objects[0].name, firstData]]);
    let done = 0;
    const past = new Set<number>(); // timelines whose WAL went past --until
    for (const run of runsOf(objects, segSize)) {
      if (past.has(run.timeline)) continue;
      const tracker = new WalTracker(opts.filter.minRows);
      await scanRun(repo, run, segSize, tracker, { dir, binDir, batch: Math.max(2, opts.batch ?? 8), stopAfter, warn, prefetched, onSegment: () => opts.onProgress?.(++done, objects.length) });
      scanned.records += tracker.records;
      scanned.commits += tracker.commits;
      const txs = tracker.committed.filter((t) => {
        const k = `${t.xid}@${t.lsn}`;
        if (seen.has(k)) return false; // the same WAL copied into the next timeline's first segment
        seen.add(k);
        return true;
      });
      const names = await nameAll(txs, opts.names);
      for (const t of txs) {
        const tables = describeTx(t, names, tracker);
        if (tables.length) all.push({ xid: t.xid, lsn: formatLsn(t.lsn), commitTime: t.commitTime, commitMs: t.commitMs, timeline: run.timeline, subxacts: t.subxacts, tables });
      }
      if (stopAfter !== undefined && (tracker.lastCommitMs ?? 0) > stopAfter) past.add(run.timeline);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const transactions = selectIncidents(all, { ...opts.filter, since: opts.filter.since ?? opts.since });
  return { scanned, transactions, proposal: propose(transactions) };
}

async function nameAll(txs: CommittedTx[], resolver: NameResolver): Promise<Names> {
  const files = new Map<string, RelFile>();
  const oids = new Map<string, { db: number; oid: number }>();
  for (const t of txs) {
    for (const k of t.rows.keys()) files.set(k, parseRelKey(k));
    for (const f of [...t.dropped, ...t.created, ...t.smgrTruncated]) files.set(relKey(f), f);
    for (const o of [...t.lockedOids, ...t.truncatedOids]) oids.set(`${o.db}/${o.oid}`, o);
  }
  return withFormerFiles(txs, {
    files: await resolver.byFile([...files.values()]),
    oids: await resolver.byOid([...oids.values()]),
    databases: await resolver.databases(),
  });
}

interface ScanContext {
  dir: string;
  /** Files already fetched (taken once). */
  prefetched: Map<string, Buffer>;
  binDir: string;
  batch: number;
  stopAfter?: number;
  warn: (line: string) => void;
  onSegment: () => void;
}

/**
 * Decodes one run of consecutive segments in batches. Each pg_waldump run starts
 * just after the last record the previous one printed (`-s`), in the segment that
 * holds it, so a record that crosses a batch boundary is read whole by the next run.
 */
async function scanRun(repo: Repository, run: Run, segSize: number, tracker: WalTracker, sc: ScanContext): Promise<void> {
  const held = new Map<number, string>();
  try {
    await scanBatches(repo, run, segSize, tracker, sc, held);
  } finally {
    for (const path of held.values()) await unlink(path).catch(() => undefined);
  }
}

/** scanRun's loop; `held` maps segment indexes to the files fetched into the temp directory. */
async function scanBatches(repo: Repository, run: Run, segSize: number, tracker: WalTracker, sc: ScanContext, held: Map<number, string>): Promise<void> {
  const n = run.segments.length;
  const size = BigInt(segSize);
  let pos = run.segnos[0] * size;
  let reported = -1;
  for (;;) {
    const start = run.segnos.findIndex((s) => s === pos / size);
    if (start < 0) return;
    const end = Math.min(start + sc.batch, n) - 1;
    for (const [i, path] of held) {
      if (i < start) {
        await unlink(path).catch(() => undefined);
        held.delete(i);
      }
    }
    for (let i = start; i <= end; i++) {
      if (held.has(i)) continue;
      const o = run.segments[i];
      const path = join(sc.dir, fileNameOf(o));
      const data = sc.prefetched.get(o.name) ?? (await fetchWal(repo, o.name));
      sc.prefetched.delete(o.name);
      await writeFile(path, data, { mode: 0o600 });
      held.set(i, path);
    }
    const r = await waldump(sc.binDir, sc.dir, pos, fileNameOf(run.segments[start]), fileNameOf(run.segments[end]), tracker, sc.stopAfter);
    if (tracker.records === 0 && r.error) {
      throw new PostgresError(`pg_waldump (${sc.binDir}) cannot read WAL segment ${run.segments[start].name}: ${r.error}`, {
        hint: 'use the PostgreSQL binaries of the version that wrote the WAL (FERRY_PG_BIN)',
      });
    }
    const next = tracker.lastLsn >= pos ? tracker.lastLsn + 1n : pos;
    const at = run.segnos.findIndex((s) => s === next / size);
    for (; reported < (at < 0 ? end : at - 1); ) {
      reported++;
      sc.onSegment();
    }
    if (r.stopped) return;
    if (end === n - 1) {
      while (reported < n - 1) {
        reported++;
        sc.onSegment();
      }
      return;
    }
    if (at === end && next > pos) {
      pos = next;
      continue;
    }
    // The decoder stopped before the batch's last segment: damaged or foreign WAL.
    const skipTo = Math.max(at < 0 ? start : at, start) + 1;
    sc.warn(`WAL decoding stopped at ${formatLsn(next)} in ${run.segments[Math.max(at, start)].name}${r.error ? ` (${r.error})` : ''}; continuing with ${run.segments[skipTo]?.name ?? 'the next run'}`);
    if (skipTo >= n) return;
    pos = run.segnos[skipTo] * size;
  }
}

/** Runs pg_waldump over [start, end] from `pos`, feeding the tracker; stops (kills it) after a commit later than `stopAfter`. */
function waldump(binDir: string, dir: string, pos: bigint, startSeg: string, endSeg: string, tracker: WalTracker, stopAfter?: number): Promise<{ stopped: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const bin = join(binDir, 'pg_waldump');
    const child = spawn(bin, ['-p', dir, '-s', formatLsn(pos), startSeg, endSeg], { env: { ...process.env, TZ: 'UTC' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stopped = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    child.on('error', (e) => reject(new PostgresError(`cannot run ${bin}: ${e.message}`, { hint: 'install the PostgreSQL client programs or set FERRY_PG_BIN' })));
    const lines = createInterface({ input: child.stdout });
    let open = 2;
    const finish = () => {
      if (--open > 0) return;
      const err = stderr
        .trim()
        .split('\n')
        .filter((l) => l.includes('error'))
        .at(-1)
        ?.replace(/^pg_waldump: error: /, '');
      resolve({ stopped, ...(err ? { error: err } : {}) });
    };
    lines.on('close', finish);
    lines.on('line', (line) => {
      if (stopped) return;
      const r = tracker.feedLine(line);
      if (r && stopAfter !== undefined && r.rmgr === 'Transaction' && (tracker.lastCommitMs ?? 0) > stopAfter) {
        stopped = true;
        child.kill();
      }
    });
    child.on('close', finish);
  });
}
