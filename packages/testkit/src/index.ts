/** @portcullis/testkit: real SMTP parts for tests on loopback. */
export { CaptureServer, type CapturedMessage, type CaptureServerOptions } from './capture-server.js';
export { RawSmtp, codeOf } from './raw-smtp.js';
export { sendMail, type SendOptions, type SendResult } from './send.js';
export { startTestRelay, type TestRelay, type TestRelayOptions } from './test-relay.js';
export { selfSignedFiles } from './tls.js';
export { freePort, waitForPort, waitUntil } from './ports.js';
