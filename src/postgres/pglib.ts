/**
 * node-postgres, for every module that uses it at run time (types come from 'pg' itself).
 *
 * When it loads, node-postgres asks whether it runs on Cloudflare Workers: by
 * `navigator.userAgent` where there is a `navigator` (Node 21 and later), else by making a
 * `Response`, which on Node 20 loads Node's whole fetch implementation (undici) first:
 * about 30 ms of every command that talks to PostgreSQL, `ferry pg snapshot` and
 * `pg restore` among them. pg-load-shim.ts (evaluated just before it) puts a `navigator`
 * with Node's user agent in place while it loads, and it is removed again here.
 */
import { shimmed } from './pg-load-shim.ts';
import pg from 'pg';

if (shimmed) delete (globalThis as { navigator?: unknown }).navigator;

export default pg;
