/**
 * What a command handler gets: resolved settings, output helpers, and lazy
 * access to storage and the repository (opened once, closed by main).
 */
import { openStorage } from '../storage/open.ts';
import type { Storage } from '../storage/types.ts';
import { Repository } from '../repo/repository.ts';
import { credentialsFrom, type Settings } from '../config/load.ts';
import { ConfigError } from '../util/errors.ts';
import { ProgressLine } from '../util/progress.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { makeLogger, type Logger } from '../util/log.ts';

export class Context {
  private storageP?: Storage;
  private repoP?: Promise<Repository>;
  readonly progress: ProgressLine;
  private logger?: Logger;

  constructor(
    readonly settings: Settings,
    readonly opts: { json: boolean; quiet: boolean; verbose: boolean },
    readonly env: NodeJS.ProcessEnv = process.env,
    readonly clock: Clock = systemClock,
  ) {
    this.progress = new ProgressLine(process.stderr, false);
  }

  get log(): Logger {
    this.logger ??= makeLogger(this.opts.verbose ? 'debug' : (this.env.FERRY_LOG_LEVEL ?? 'warn'));
    return this.logger;
  }

  get json(): boolean {
    return this.opts.json;
  }

  /** Prints a line for humans (suppressed by --json and --quiet). */
  say(line: string): void {
    if (!this.opts.json && !this.opts.quiet) process.stdout.write(line + '\n');
  }

  /** Prints a result: JSON with --json, else the human text. */
  out(json: unknown, human: () => string): void {
    if (this.opts.json) process.stdout.write(JSON.stringify(json, null, 2) + '\n');
    else {
      const text = human();
      if (text) process.stdout.write(text + '\n');
    }
  }

  warn(line: string): void {
    process.stderr.write(`ferry: warning: ${line}\n`);
  }

  repoUrl(): string {
    const url = this.settings.repoUrl;
    if (!url) throw new ConfigError('no repository given', { hint: 'pass --repo URL, set FERRY_REPO, or set repository.url in ferry.yaml' });
    return url;
  }

  storage(): Storage {
    this.storageP ??= openStorage(this.repoUrl(), {
      endpoint: this.settings.s3Endpoint,
      ...(this.opts.verbose ? { log: this.log } : {}),
    });
    return this.storageP;
  }

  repo(): Promise<Repository> {
    this.repoP ??= Repository.open(this.storage(), credentialsFrom(this.settings, this.env), this.clock);
    return this.repoP;
  }

  async close(): Promise<void> {
    this.progress.done();
    if (this.storageP) await this.storageP.close();
  }
}
