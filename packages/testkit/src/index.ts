/**
 * @portcullis/testkit: test a plugin, or a whole relay, without sockets (`inject`, `callHook`, a
 * MIME builder, a fake clock, scripted DNS, the plugin conformance suite); and real SMTP parts on
 * loopback for end-to-end tests.
 */
// First, before anything imports tsyringe: its decorators need the Reflect metadata polyfill.
import 'reflect-metadata';
export { inject, InMemoryRelay, mailTranscript, dotStuff, type InjectOptions, type InjectResult, type InMemoryRelayOptions, type PluginSpec, type SessionResult, type SmtpReply, type SpooledCapture, type TranscriptStep } from './in-memory/inject.js';
export { callHook, type CallHookOptions, type CallHookResult, type SessionInit } from './in-memory/call-hook.js';
export { DeliveryCapture, type CapturedDelivery, type CaptureResponder } from './in-memory/delivery-capture.js';
export { buildMessage, type MessageSpec, type MessageAttachment } from './in-memory/mime-builder.js';
export { fakeClock, type FakeClock } from './in-memory/fake-clock.js';
export { ScriptedResolver, DnsError, reverseName, type DnsScript, type DnsAnswer, type DnsQuery, type RecordType } from './in-memory/scripted-dns.js';
export { memoryLogger, type LogEntry } from './in-memory/memory-log.js';
export { describePluginConformance, type ConformanceFixtures } from './suites/conformance.js';
export { CaptureServer, type CapturedMessage, type CaptureServerOptions } from './servers/capture-server.js';
export { RawSmtp, codeOf } from './clients/raw-smtp.js';
export { sendMail, type SendOptions, type SendResult } from './clients/send.js';
export { startTestRelay, type TestRelay, type TestRelayOptions } from './relays/test-relay.js';
export { selfSignedFiles } from './servers/tls.js';
export { freePort, pollUntil, waitForPort, waitUntil } from './clients/ports.js';
export { sendNumbered, sendLoad, messageIds, type SendOutcome, type NumberedMessageOptions, type LoadOptions } from './clients/message-load.js';
export { sinkRelayConfig, type SinkRelayConfigOptions } from './relays/sink-relay-config.js';
export { rawSend, rawTransaction, rcptReplies, rcptReply, type RawSendOptions, type RawSendResult, type RcptRepliesOptions } from './clients/raw-exchange.js';
export { hostedRelay, type HostedRelay, type HostedRelayOptions } from './relays/hosted-relay.js';
export { RedisServer } from './servers/redis-server.js';
export { RelayProcess, CLI, jsonLogLines, runCli, type CliResult, type RelayProcessOptions } from './relays/relay-process.js';
export { Daemon, TestDaemon, tempDir, removeDir, connects, type DaemonSpec } from './servers/daemon.js';
export { startSilentServer } from './servers/silent-server.js';
export { HeapProbe } from './relays/heap-probe.js';
export { writeRspamdConfig, RSPAMD_BINARY, RSPAMD_OFFLINE_DISABLED, type RspamdConfigOptions } from './servers/rspamd-config.js';
export { RelayChild, memoryOf, resetPeak, peakGrowthDuring, describeGrowth, writeBigMessage, sendFile } from './relays/relay-child.js';
export { describeScannerFailClosed, type ScannerFailClosedSpec, type ScannerBackendOptions } from './suites/scanner-fail-closed.js';
