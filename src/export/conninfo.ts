/**
 * Connection strings (`postgresql://…` URLs, `key=value …` strings, or a bare
 * database name) turned into libpq environment variables, so PostgreSQL's
 * programs get the connection without a password on their command line, and into
 * node-postgres settings for the same server.
 */
import { UsageError } from '../util/errors.ts';

/** libpq parameter -> environment variable (the ones libpq documents). */
const ENV_OF: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  dbname: 'PGDATABASE',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  passfile: 'PGPASSFILE',
  service: 'PGSERVICE',
  options: 'PGOPTIONS',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  sslmode: 'PGSSLMODE',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslrootcert: 'PGSSLROOTCERT',
  sslcrl: 'PGSSLCRL',
  gssencmode: 'PGGSSENCMODE',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
  channel_binding: 'PGCHANNELBINDING',
};

/** Parses a connection string into libpq parameters (`dbname`, `host`, …). */
export function parseConninfo(s: string): Record<string, string> {
  const text = s.trim();
  if (text === '') throw new UsageError('the connection string is empty', { hint: 'give a database name, postgresql://USER@HOST:PORT/DB, or "host=H dbname=D"' });
  const params: Record<string, string> = {};
  const set = (k: string, v: string) => {
    const key = k === 'database' ? 'dbname' : k;
    if (!(key in ENV_OF)) throw new UsageError(`unknown connection parameter "${k}" in the connection string`, { hint: `known: ${Object.keys(ENV_OF).join(', ')}` });
    params[key] = v;
  };
  const url = /^postgres(?:ql)?:\/\/([^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/is.exec(text);
  if (/^postgres(ql)?:\/\//i.test(text)) {
    // Parsed by hand: libpq's URLs allow what WHATWG URLs do not (an empty host after `user@`, host lists).
    if (!url) throw new UsageError('the connection string is not a valid postgresql:// URL');
    const dec = (v: string, what: string) => {
      try {
        return decodeURIComponent(v);
      } catch {
        throw new UsageError(`the connection string has a badly escaped ${what}`);
      }
    };
    let authority = url[1];
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = authority.slice(0, at);
      authority = authority.slice(at + 1);
      const colon = userinfo.indexOf(':');
      const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
      if (user) set('user', dec(user, 'user name'));
      if (colon >= 0) set('password', dec(userinfo.slice(colon + 1), 'password'));
    }
    if (authority) {
      const hosts: string[] = [];
      const ports: string[] = [];
      for (const h of authority.split(',')) {
        const m = /^\[([^\]]*)\](?::(\d*))?$/.exec(h) ?? /^([^:]*)(?::(\d*))?$/.exec(h);
        if (!m) throw new UsageError(`the connection string has a bad host "${h}"`);
        hosts.push(dec(m[1], 'host'));
        ports.push(m[2] ?? '');
      }
      if (hosts.some(Boolean)) set('host', hosts.join(','));
      if (ports.some(Boolean)) set('port', ports.join(','));
    }
    if (url[2]) set('dbname', dec(url[2], 'database name'));
    for (const kv of (url[3] ?? '').split('&')) {
      if (!kv) continue;
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`the connection string has a bad parameter "${kv}"`);
      set(dec(kv.slice(0, eq), 'parameter'), dec(kv.slice(eq + 1), 'parameter'));
    }
    return params;
  }
  if (!text.includes('=')) return { dbname: text };
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  while (true) {
    skipSpace();
    if (i >= text.length) break;
    const k0 = i;
    while (i < text.length && text[i] !== '=' && !/\s/.test(text[i])) i++;
    const key = text.slice(k0, i);
    skipSpace();
    if (text[i] !== '=' || key === '') throw new UsageError(`the connection string is malformed near "${text.slice(k0, k0 + 20)}"`, { hint: 'use key=value pairs separated by spaces, e.g. "host=/tmp dbname=app"' });
    i++;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) throw new UsageError('the connection string has an unterminated quoted value');
        const c = text[i++];
        if (c === '\\' && i < text.length) value += text[i++];
        else if (c === "'") break;
        else value += c;
      }
    } else {
      while (i < text.length && !/\s/.test(text[i])) {
        const c = text[i++];
        if (c === '\\' && i < text.length) value += text[i++];
        else value += c;
      }
    }
    set(key, value);
  }
  return params;
}

/**
 * The environment for a PostgreSQL program connecting with `params`: `base` with the
 * variables for `params` set over it (what the string leaves out comes from the
 * libpq environment, as with psql).
 */
export function conninfoEnv(params: Record<string, string>, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const [k, v] of Object.entries(params)) env[ENV_OF[k]] = v;
  return env;
}

/** node-postgres settings for the server a libpq environment names. */
export function clientConfigFromEnv(env: NodeJS.ProcessEnv): { host?: string; port?: number; user?: string; password?: string; database?: string; ssl?: { rejectUnauthorized: boolean } } {
  const mode = env.PGSSLMODE;
  return {
    host: env.PGHOST,
    port: env.PGPORT ? Number(env.PGPORT) : undefined,
    user: env.PGUSER,
    password: env.PGPASSWORD,
    database: env.PGDATABASE,
    ...(mode === 'require' ? { ssl: { rejectUnauthorized: false } } : mode === 'verify-ca' || mode === 'verify-full' ? { ssl: { rejectUnauthorized: true } } : {}),
  };
}

/** A libpq `key=value` string for one value, quoted so any database name passes through as a name. */
export function quoteConninfoValue(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
