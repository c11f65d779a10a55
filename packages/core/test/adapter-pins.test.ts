import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { container } from 'tsyringe';
import { libraryHashes, PINS } from '../src/adapter/smtp-server.js';
import { NODEMAILER_PINS, nodemailerHashes } from '../src/adapter/nodemailer.js';
import { hasReplaceableRegistry, TSYRINGE_PINS } from '../src/adapter/tsyringe.js';

// The one pin test: every library internal the core wraps, replaces or reads is listed beside its pin
// in an adapter's table (adapter/smtp-server.ts, adapter/nodemailer.ts, adapter/tsyringe.ts). An
// upgrade of any of these libraries fails here first, naming the method whose source changed.
describe('library pins (adapter/)', () => {
  it('smtp-server: the installed version and the source hash of every wrapped or replaced method match PINS', () => {
    const installed = libraryHashes();
    for (const [key, pinned] of Object.entries(PINS)) assert.equal(installed[key as keyof typeof PINS], pinned, `smtp-server ${key} differs from its pin`);
    assert.deepEqual(Object.keys(installed).sort(), Object.keys(PINS).sort());
  });

  it('nodemailer: the installed version and the source hash of every used method match NODEMAILER_PINS', () => {
    const installed = nodemailerHashes();
    assert.equal(installed.version, NODEMAILER_PINS.version);
    assert.ok(NODEMAILER_PINS['SMTPConnection#_sendCommand'].includes(installed['SMTPConnection#_sendCommand'] as never), `nodemailer _sendCommand ${installed['SMTPConnection#_sendCommand']} differs from its pin`);
    assert.ok(NODEMAILER_PINS['SMTPConnection#_createSendStream'].includes(installed['SMTPConnection#_createSendStream'] as never), `nodemailer _createSendStream ${installed['SMTPConnection#_createSendStream']} differs from its pin`);
  });

  it('tsyringe: the installed version matches TSYRINGE_PINS and a child container has the registry the adapter replaces entries in', () => {
    const version = (createRequire(import.meta.url)('tsyringe/package.json') as { version: string }).version;
    assert.equal(version, TSYRINGE_PINS.version);
    assert.equal(hasReplaceableRegistry(container.createChildContainer()), true);
  });
});
