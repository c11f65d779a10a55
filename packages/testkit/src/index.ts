/**
 * @portcullis/testkit: test a plugin, or a whole relay, without sockets (`inject`, `callHook`, a
 * MIME builder, a fake clock, scripted DNS, the plugin conformance suite); and real SMTP parts on
 * loopback for end-to-end tests.
 */
// First, before anything imports tsyringe: its decorators need the Reflect metadata polyfill.
import 'reflect-metadata';
export { inject, InMemoryRelay, mailTranscript, dotStuff, type InjectOptions, type InjectResult, type InMemoryRelayOptions, type PluginSpec, type SessionResult, type SmtpReply, type SpooledCapture, type TranscriptStep } from './inject.js';
export { callHook, type CallHookOptions, type CallHookResult, type SessionInit } from './call-hook.js';
export { DeliveryCapture, type CapturedDelivery, type CaptureResponder } from './delivery-capture.js';
export { buildMessage, type MessageSpec, type MessageAttachment } from './mime-builder.js';
export { fakeClock, type FakeClock } from './fake-clock.js';
export { ScriptedResolver, DnsError, reverseName, type DnsScript, type DnsAnswer, type DnsQuery, type RecordType } from './scripted-dns.js';
export { memoryLogger, type LogEntry } from './memory-log.js';
export { describePluginConformance, type ConformanceFixtures } from './conformance.js';
export { CaptureServer, type CapturedMessage, type CaptureServerOptions } from './capture-server.js';
export { RawSmtp, codeOf } from './raw-smtp.js';
export { sendMail, type SendOptions, type SendResult } from './send.js';
export { startTestRelay, type TestRelay, type TestRelayOptions } from './test-relay.js';
export { selfSignedFiles } from './tls.js';
export { freePort, waitForPort, waitUntil } from './ports.js';
export { rawSend, rcptReplies, rcptReply, type RawSendOptions, type RawSendResult, type RcptRepliesOptions } from './raw-exchange.js';
export { hostedRelay, type HostedRelay, type HostedRelayOptions } from './hosted-relay.js';
export { RedisServer } from './redis-server.js';
export { RelayProcess } from './relay-process.js';
export { Daemon, TestDaemon, tempDir, removeDir, connects, type DaemonSpec } from './daemon.js';
export { startSilentServer } from './silent-server.js';
export { HeapProbe } from './heap-probe.js';
export { writeRspamdConfig, RSPAMD_BINARY, RSPAMD_OFFLINE_DISABLED, type RspamdConfigOptions } from './rspamd-config.js';
export { RelayChild, memoryOf, resetPeak, peakGrowthDuring, describeGrowth, writeBigMessage, sendFile } from './relay-child.js';
export { describeScannerFailClosed, type ScannerFailClosedSpec, type ScannerBackendOptions } from './scanner-fail-closed.js';
