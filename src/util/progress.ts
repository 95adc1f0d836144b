/**
 * A one-line progress display on stderr, shown only when stderr is a terminal.
 * Domain code reports numbers through callbacks; only the faces render them.
 */
export class ProgressLine {
  private readonly enabled: boolean;
  private last = '';
  constructor(stream: NodeJS.WriteStream = process.stderr, force = false) {
    this.enabled = force || !!stream.isTTY;
    this.stream = stream;
  }
  private readonly stream: NodeJS.WriteStream;

  update(text: string): void {
    if (!this.enabled || text === this.last) return;
    this.last = text;
    const width = this.stream.columns ?? 100;
    this.stream.write(`\r${text.slice(0, width - 1)}\x1b[K`);
  }

  done(): void {
    if (this.enabled && this.last) this.stream.write('\r\x1b[K');
    this.last = '';
  }
}
