/**
 * Repository locks: plain JSON objects at `locks/<id>` with owner and expiry.
 *
 * Shared locks (snapshots, restores, checks) coexist; an exclusive lock (prune)
 * excludes every other lock. To take a lock: write ours, then list the others; on
 * a conflict remove ours and fail. Two racing processes each see the other's lock,
 * so at most one proceeds. A lock is refreshed while held and is stale once its
 * expiry has passed, or when its holder on this host is no longer running;
 * stale locks are ignored and can be removed with `ferry unlock`.
 */
import { hostname, userInfo } from 'node:os';
import { listAll } from '../storage/types.ts';
import { LockError, NotFoundError } from '../util/errors.ts';
import { DIRS } from './format.ts';
import type { Repository } from './repository.ts';

export interface LockRecord {
  id: string;
  host: string;
  pid: number;
  user: string;
  exclusive: boolean;
  purpose: string;
  created: number;
  expires: number;
}

export const LOCK_TTL_MS = 30 * 60 * 1000;
const REFRESH_MS = 5 * 60 * 1000;

export interface HeldLock {
  record: LockRecord;
  release(): Promise<void>;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isStale(l: LockRecord, now: number): boolean {
  if (l.expires < now) return true;
  return l.host === hostname() && !pidAlive(l.pid);
}

export async function listLocks(repo: Repository): Promise<LockRecord[]> {
  const out: LockRecord[] = [];
  for await (const o of listAll(repo.storage, DIRS.locks)) {
    try {
      out.push(JSON.parse((await repo.storage.get(o.key)).toString('utf8')) as LockRecord);
    } catch (e) {
      if (!(e instanceof NotFoundError) && !(e instanceof SyntaxError)) throw e;
    }
  }
  return out;
}

function describe(l: LockRecord, now: number): string {
  const age = Math.round((now - l.created) / 1000);
  return `${l.exclusive ? 'exclusive' : 'shared'} lock ${l.id.slice(0, 8)} held by ${l.user}@${l.host} pid ${l.pid} for "${l.purpose}" since ${age}s ago`;
}

/**
 * Takes a lock, retrying for up to `waitMs` while another process holds a conflicting one
 * (a backup waits out a prune rather than failing).
 */
export async function acquireLock(repo: Repository, purpose: string, exclusive: boolean, waitMs = 0): Promise<HeldLock> {
  const deadline = Date.now() + waitMs;
  for (let delay = 200; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await tryLock(repo, purpose, exclusive);
    } catch (e) {
      if (!(e instanceof LockError) || Date.now() + delay > deadline) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

async function tryLock(repo: Repository, purpose: string, exclusive: boolean): Promise<HeldLock> {
  const now = repo.clock.now();
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry */
  }
  const record: LockRecord = {
    id: repo.clock.random(16).toString('hex'),
    host: hostname(),
    pid: process.pid,
    user,
    exclusive,
    purpose,
    created: now,
    expires: now + LOCK_TTL_MS,
  };
  const key = `${DIRS.locks}${record.id}`;
  await repo.storage.put(key, Buffer.from(JSON.stringify(record)));
  const others = (await listLocks(repo)).filter((l) => l.id !== record.id && !isStale(l, repo.clock.now()));
  const conflict = others.find((l) => exclusive || l.exclusive);
  if (conflict) {
    await repo.storage.delete(key);
    throw new LockError(`repository ${repo.location} is locked: ${describe(conflict, now)}`, {
      hint: 'wait for it to finish; if that process is gone, `ferry unlock` removes stale locks',
    });
  }
  const timer = setInterval(() => {
    record.expires = repo.clock.now() + LOCK_TTL_MS;
    repo.storage.put(key, Buffer.from(JSON.stringify(record))).catch(() => undefined);
  }, REFRESH_MS);
  timer.unref();
  return {
    record,
    release: async () => {
      clearInterval(timer);
      await repo.storage.delete(key);
    },
  };
}

export async function withLock<T>(repo: Repository, purpose: string, exclusive: boolean, fn: () => Promise<T>, waitMs = 0): Promise<T> {
  const lock = await acquireLock(repo, purpose, exclusive, waitMs);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** Removes stale locks (or all, when `all`); returns what was removed. */
export async function removeLocks(repo: Repository, all: boolean): Promise<LockRecord[]> {
  const now = repo.clock.now();
  const removed: LockRecord[] = [];
  for (const l of await listLocks(repo)) {
    if (all || isStale(l, now)) {
      await repo.storage.delete(`${DIRS.locks}${l.id}`);
      removed.push(l);
    }
  }
  return removed;
}
