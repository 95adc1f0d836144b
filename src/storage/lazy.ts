/**
 * A storage whose backend is created on first use, so that loading a heavy
 * client library (the AWS SDK) is paid only by commands that touch storage.
 * Location and capabilities are known up front.
 */
import type { Readable } from 'node:stream';
import type { Capabilities, GetOptions, ListPage, ObjectInfo, PutOptions, Storage } from './types.ts';

export class LazyStorage implements Storage {
  private inner?: Promise<Storage>;
  constructor(
    readonly location: string,
    readonly capabilities: Capabilities,
    private readonly factory: () => Promise<Storage>,
  ) {}

  private load(): Promise<Storage> {
    this.inner ??= this.factory();
    return this.inner;
  }

  /** The backend, created if needed (for tests and diagnostics). */
  backend(): Promise<Storage> {
    return this.load();
  }

  async put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    return (await this.load()).put(key, data, opts);
  }
  async putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    return (await this.load()).putStream(key, body, opts);
  }
  async get(key: string, opts?: GetOptions): Promise<Buffer> {
    return (await this.load()).get(key, opts);
  }
  async getStream(key: string): Promise<Readable> {
    return (await this.load()).getStream(key);
  }
  async stat(key: string): Promise<ObjectInfo | undefined> {
    return (await this.load()).stat(key);
  }
  async listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage> {
    return (await this.load()).listPage(prefix, cursor, pageSize);
  }
  async delete(key: string): Promise<void> {
    return (await this.load()).delete(key);
  }
  async close(): Promise<void> {
    if (this.inner) await (await this.inner).close();
  }
}
