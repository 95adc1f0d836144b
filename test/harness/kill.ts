/**
 * Crash tests: run a child process until it reaches a named kill point
 * (src/util/killpoint.ts), then SIGKILL it, as a power cut would.
 *
 * The child runs in its own process group and the whole group is killed, so a
 * wrapper (bin/ferry, a shell) and what it started die together. Children still
 * running when the test process exits are killed too.
 */
import { spawn } from 'node:child_process';
import { onExitStop } from './tmp.ts';

export interface RunUntilPointOptions {
  /** The kill point name, passed to the child as FERRY_KILL_POINT. */
  point: string;
  /** Kill at the n-th time the point is reached (FERRY_KILL_POINT_HIT). Default 1. */
  hit?: number;
  /** Extra environment (merged over process.env). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
  /** Give up (kill and reject) after this many ms. Default 60 000. */
  timeoutMs?: number;
}

export interface KilledRun {
  stdout: string;
  stderr: string;
  killed: true;
}

/**
 * Spawns `cmd args` with FERRY_KILL_POINT=<point> and resolves once the child has
 * printed `FERRY_KILL_POINT <point>` on stderr and been SIGKILLed. Rejects, with
 * the child's output, when it exits without reaching the point or times out.
 */
export function runUntilPoint(cmd: string, args: string[], opts: RunUntilPointOptions): Promise<KilledRun> {
  const marker = `FERRY_KILL_POINT ${opts.point}`;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    FERRY_KILL_POINT: opts.point,
    FERRY_KILL_POINT_HIT: String(opts.hit ?? 1),
  };
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { env, cwd: opts.cwd, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let pending = '';
    let outcome: 'killed' | 'timeout' | undefined;
    let done = false;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        try {
          child.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    };
    const unregister = onExitStop(killGroup);
    const timer = setTimeout(() => {
      if (outcome) return;
      outcome = 'timeout';
      killGroup();
    }, timeoutMs);

    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      if (!outcome && lines.some((l) => l.replace(/\r$/, '').endsWith(marker))) {
        outcome = 'killed';
        killGroup();
      }
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');

    child.on('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unregister();
      reject(new Error(`could not run ${cmd}: ${err.message}`));
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unregister();
      if (outcome === 'killed') {
        resolveRun({ stdout, stderr, killed: true });
        return;
      }
      const why =
        outcome === 'timeout'
          ? `did not reach kill point "${opts.point}" within ${timeoutMs} ms`
          : `exited (${signal ?? `code ${code}`}) before reaching kill point "${opts.point}"`;
      reject(new Error(`${[cmd, ...args].join(' ')} ${why}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
    };
    child.on('close', finish);
    // A grandchild outside the group may hold the pipes open: do not wait for 'close' forever.
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 1000).unref());
  });
}
