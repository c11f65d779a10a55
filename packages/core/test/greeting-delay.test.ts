import assert from 'node:assert/strict';
import { canOverrideGreetingDelay, installedSmtpServerVersion, libraryInitHash, PINNED_INIT_SHA256, PINNED_SMTP_SERVER_VERSION } from '../src/internal.js';

/**
 * The greeting delay is set by reproducing smtp-server's SMTPConnection#init. This test fails when
 * the library changes, so an upgrade is a deliberate act: re-read init, update greeting-delay.ts.
 */
describe('greeting delay (pinned to smtp-server)', () => {
  it('runs against the exact smtp-server version and init source that greeting-delay.ts reproduces', async () => {
    assert.equal(installedSmtpServerVersion(), PINNED_SMTP_SERVER_VERSION);
    assert.equal(await libraryInitHash(), PINNED_INIT_SHA256);
    assert.equal(await canOverrideGreetingDelay(), true);
  });

});
