/** The keyed fingerprint of secrets content (src/secrets/secrets.ts): equal iff content is, and meaningless without the key. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { fingerprint, type SecretContent } from '../../src/secrets/secrets.ts';

const one = (data: string, path = 'app.env', mode = 0o600): SecretContent => ({ source: 'file', files: [{ path, mode, data: Buffer.from(data) }], dirs: [] });

describe('secrets fingerprint', () => {
  const key = randomBytes(32);
  it('is equal for equal content, whatever the mode', () => {
    assert.equal(fingerprint(key, one('PASSWORD=1234\n')), fingerprint(key, one('PASSWORD=1234\n', 'app.env', 0o644)));
  });
  it('differs when a byte, a path or the tree shape differs', () => {
    const fps = new Set([
      fingerprint(key, one('PASSWORD=1234\n')),
      fingerprint(key, one('PASSWORD=1235\n')),
      fingerprint(key, one('PASSWORD=1234\n', 'other.env')),
      fingerprint(key, { ...one('PASSWORD=1234\n'), dirs: ['sub'] }),
      // Two files whose concatenation equals one file's content.
      fingerprint(key, { source: 'dir', files: [{ path: 'app.env', mode: 0o600, data: Buffer.from('PASSWORD=') }, { path: 'b', mode: 0o600, data: Buffer.from('1234\n') }], dirs: [] }),
    ]);
    assert.equal(fps.size, 5);
  });
  it('depends on the repository key, and is no plain hash of the value', () => {
    const c = one('PASSWORD=1234\n');
    assert.notEqual(fingerprint(key, c), fingerprint(randomBytes(32), c));
    assert.notEqual(fingerprint(key, c), createHash('sha256').update('PASSWORD=1234\n').digest('hex'));
  });
});
