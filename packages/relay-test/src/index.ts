/** @portcullis/relay-test: open-relay self-test for any SMTP server. */
export { buildCases, addressLiteral, DEFAULT_THIRD_PARTY, type RelayCase, type CaseKind, type CaseParams } from './cases.js';
export { runRelayTest, parseTarget, judge, RelayTestConnectError, type Outcome, type RelayTestOptions, type RelayTestReport, type CaseResult, type Verdict, type Stage } from './run.js';
export { formatTable, formatJson, replyCell } from './format.js';
export { relayTestCommand, runRelayTestCli, main, RelayTestExit, type RelayTestCliOptions, type Io } from './cli.js';
export { SmtpClient, SmtpError, firstLine, type SmtpReply, type SmtpConnectOptions } from './smtp-client.js';
