/** Comparing databases for the export tests: a plain pg_dump, hashed. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestCluster } from '../harness/pg.ts';

let n = 0;

/**
 * A plain-format dump of `db` (no owners, no privileges), hashed line by line, leaving
 * out the random `\restrict` keys newer pg_dump releases write. `dir` must be writable
 * by the postgres OS user.
 */
export async function plainDumpHash(cluster: TestCluster, db: string, dir: string): Promise<string> {
  const file = join(dir, `plain-${db}-${process.pid}-${n++}.sql`);
  await cluster.run('pg_dump', ['--no-owner', '--no-privileges', '-f', file, db]);
  const h = createHash('sha256');
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of rl) if (!/^\\(un)?restrict /.test(line)) h.update(line + '\n');
  await rm(file, { force: true });
  return h.digest('hex');
}
