/**
 * Moving rows from the scratch server into the live one as a stream:
 * `COPY (SELECT ...) TO STDOUT` on the scratch side piped into
 * `COPY ... FROM STDIN` on the live side (text format, so a type whose internal
 * id differs between the two servers still loads by its text form). Memory stays
 * bounded whatever the table's size: the pipe applies backpressure.
 */
import { pipeline } from 'node:stream/promises';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { Client } from '../postgres/connect.ts';

/**
 * Copies the result of `selectSql` (run on `source`) into `targetTable (columns)` on
 * `target`, which MAY be inside an open transaction. Returns the number of rows copied.
 */
export async function copyRows(source: Client, selectSql: string, target: Client, targetTable: string, columns: string[]): Promise<number> {
  const out = source.query(copyTo(`COPY (${selectSql}) TO STDOUT`));
  const into = target.query(copyFrom(`COPY ${targetTable} (${columns.join(', ')}) FROM STDIN`));
  await pipeline(out, into);
  return into.rowCount;
}
