/**
 * Parsing `SCHEMA.TABLE` as a user types it on the command line, strictly:
 * one or two identifiers separated by one dot, each either unquoted
 * (letters, digits, `_`, `$`, not starting with a digit; folded to lower case as
 * PostgreSQL does) or double-quoted (any characters, `""` for a quote, kept
 * as is). Anything else (spaces, semicolons, comments, a third part) is refused,
 * so a name can never carry SQL; names are still quoted with ident() wherever
 * they reach SQL.
 */
import { UsageError } from '../util/errors.ts';

export interface TableName {
  schema: string;
  table: string;
}

/** PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated by the server, so refuse them. */
const MAX_IDENT_BYTES = 63;

function bad(text: string, why: string): UsageError {
  return new UsageError(`"${text}" is not a table name: ${why}`, {
    hint: 'write SCHEMA.TABLE or TABLE (schema public), e.g. public.users or "My Schema"."My Table"',
  });
}

/** Parses `SCHEMA.TABLE`, `TABLE` (schema public) or quoted forms; throws a UsageError otherwise. */
export function parseTableName(text: string): TableName {
  const parts: string[] = [];
  let i = 0;
  if (text.length === 0) throw bad(text, 'it is empty');
  for (;;) {
    if (text[i] === '"') {
      let j = i + 1;
      let name = '';
      for (;;) {
        if (j >= text.length) throw bad(text, 'a quoted identifier is not closed');
        if (text[j] === '"') {
          if (text[j + 1] === '"') {
            name += '"';
            j += 2;
            continue;
          }
          break;
        }
        name += text[j++];
      }
      if (name.length === 0) throw bad(text, 'a quoted identifier is empty');
      if (name.includes('\0')) throw bad(text, 'it contains a NUL character');
      parts.push(name);
      i = j + 1;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(text.slice(i));
      if (!m) {
        const ch = text[i];
        throw bad(text, i >= text.length ? 'a name is missing after the dot' : `unexpected character ${JSON.stringify(ch)} at position ${i + 1}`);
      }
      parts.push(m[0].toLowerCase());
      i += m[0].length;
    }
    if (i === text.length) break;
    if (text[i] !== '.') throw bad(text, `unexpected character ${JSON.stringify(text[i])} at position ${i + 1}`);
    i++;
    if (parts.length >= 2) throw bad(text, 'it has more than two parts (a database name is not accepted; connect to that database instead)');
  }
  for (const p of parts) if (Buffer.byteLength(p) > MAX_IDENT_BYTES) throw bad(text, `"${p.slice(0, 20)}…" is longer than ${MAX_IDENT_BYTES} bytes`);
  return parts.length === 1 ? { schema: 'public', table: parts[0] } : { schema: parts[0], table: parts[1] };
}

/** The name as SQL would read it, for messages (quoted only where needed). */
export function displayName(n: TableName): string {
  const q = (s: string) => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : '"' + s.replace(/"/g, '""') + '"');
  return `${q(n.schema)}.${q(n.table)}`;
}
