/**
 * Runs: an append-only record of every job (what, when, how long, bytes, result,
 * error), stored sealed at `runs/<time>-<random>`. Status, audit and the
 * dashboard read this history; nothing edits a record once written.
 */
import { hostname } from 'node:os';
import { listAll } from '../storage/types.ts';
import { errorMessage } from '../util/errors.ts';
import { mapLimit } from '../util/concurrency.ts';
import { DIRS } from './format.ts';
import type { Repository } from './repository.ts';

export interface RunRecord {
  job: string;
  asset?: string;
  host: string;
  startTime: string;
  endTime: string;
  durationMs: number;
  result: 'ok' | 'failed';
  error?: string;
  bytes?: number;
  snapshot?: string;
  details?: Record<string, unknown>;
}

export async function recordRun(repo: Repository, run: RunRecord): Promise<string> {
  const stamp = run.endTime.replace(/[-:.]/g, '');
  return repo.saveJson(DIRS.runs, 'run', run, `${stamp}-${repo.clock.random(6).toString('hex')}`);
}

/**
 * Runs `fn` as a job and appends its run record, `ok` with what `summarize` says of the
 * result, or `failed` with the error (which is rethrown; a failure to record it is not).
 */
export async function recordedRun<T>(
  repo: Repository,
  job: { job: string; asset?: string },
  fn: () => Promise<T>,
  summarize: (result: T) => Pick<RunRecord, 'bytes' | 'snapshot' | 'details'> = () => ({}),
): Promise<T> {
  const started = repo.clock.now();
  const base = () => ({ ...job, host: hostname(), startTime: new Date(started).toISOString(), endTime: new Date(repo.clock.now()).toISOString(), durationMs: repo.clock.now() - started });
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    await recordRun(repo, { ...base(), result: 'failed', error: errorMessage(e) }).catch(() => undefined);
    throw e;
  }
  await recordRun(repo, { ...base(), result: 'ok', ...summarize(result) });
  return result;
}

export async function listRuns(repo: Repository, limit = 1000): Promise<RunRecord[]> {
  const keys: string[] = [];
  for await (const o of listAll(repo.storage, DIRS.runs)) keys.push(o.key);
  keys.sort();
  const chosen = keys.slice(-limit);
  const out: RunRecord[] = new Array(chosen.length);
  await mapLimit(chosen, 8, async (k, i) => {
    out[i] = await repo.loadJson<RunRecord>(k, 'run');
  });
  return out;
}
