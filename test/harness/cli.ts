/**
 * Runs `bin/ferry` as a child process, the way a user or archive_command does.
 * Builds the bundle first if it is missing (npm test builds it in its pretest step).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FERRY = join(ROOT, 'bin', 'ferry');

let built = false;
export function ensureBuilt(): void {
  if (built) return;
  if (!existsSync(join(ROOT, 'dist', 'ferry.mjs'))) {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('building dist/ferry.mjs failed');
  }
  built = true;
}

export interface FerryResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment for a child: no inherited FERRY_* settings, plus `env`. */
export function childEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FERRY_') || k === 'FERRY_TEST_TMP') out[k] = v;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

export function ferry(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string } = {}): Promise<FerryResult> {
  ensureBuilt();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(FERRY, args, { env: childEnv(opts.env), cwd: opts.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** Like `ferry` but throws with the output when the exit code is not 0. */
export async function ferryOk(args: string[], opts: Parameters<typeof ferry>[1] = {}): Promise<FerryResult> {
  const r = await ferry(args, opts);
  if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}
