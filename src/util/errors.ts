/**
 * Error classes with exit codes. Every error a user can see is one of these:
 * one sentence saying what failed and where, and an optional hint the user can act on.
 * The CLI prints `error: <message>` and `hint: <hint>` and exits with `exitCode`.
 */

export interface FerryErrorOptions {
  hint?: string;
  cause?: unknown;
}

export class FerryError extends Error {
  readonly exitCode: number = 1;
  readonly hint?: string;
  constructor(message: string, opts: FerryErrorOptions = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = new.target.name;
    this.hint = opts.hint;
  }
}

/** Bad command line: unknown flag, missing argument. Exit 2. */
export class UsageError extends FerryError {
  override readonly exitCode = 2;
}

/** Bad or missing configuration (ferry.yaml, environment, repository URL). Exit 2. */
export class ConfigError extends FerryError {
  override readonly exitCode = 2;
}

/** Data failed authentication or did not match its id: corruption, tampering or a wrong key. */
export class IntegrityError extends FerryError {}

/** The storage backend failed (I/O error, network, permissions). */
export class StorageError extends FerryError {
  /** Whether retrying the same call may succeed (throttling, timeouts, 5xx). */
  readonly transient: boolean;
  constructor(message: string, opts: FerryErrorOptions & { transient?: boolean } = {}) {
    super(message, opts);
    this.transient = opts.transient ?? false;
  }
}

/** An object was not found in storage. */
export class NotFoundError extends StorageError {}

/** A conditional put (if-none-match) found the object already there. */
export class AlreadyExistsError extends StorageError {}

/** The repository is locked by another process. */
export class LockError extends FerryError {}

/** PostgreSQL refused, failed or is in an unexpected state. */
export class PostgresError extends FerryError {}

/** Wrong passphrase or key file. */
export class KeyError extends FerryError {}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
