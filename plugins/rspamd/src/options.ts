import { backendTarget, duration, networkList, size, z } from '@portcullis/core';

/** `host:port`, `[v6]:port`, `unix:/path` or a socket path (absolute, or `./` relative to the config file). */
const target = backendTarget({ example: '127.0.0.1:11333', socketExample: '/path/to/rspamd.sock' });

const headerName = (what: string, dflt: string) =>
  z.string().regex(/^[!-9;-~]*$/, 'a header name: printable ASCII without colon or space').default(dflt).describe(what);

/** A token rspamd reads from a request header: printable ASCII. */
const token = z.string().regex(/^[!-~]+$/, 'printable ASCII without spaces');

const direction = (which: 'inbound' | 'outbound') =>
  z
    .strictObject({
      scan: z.boolean().default(true).describe(`Scan ${which} messages; \`false\` skips them (the status header then says \`unscanned (${which} not scanned)\`).`),
      settingsId: token.optional().describe(`Sent as \`Settings-ID\`: the rspamd settings (local.d/settings.conf \`id = ...\`) applied to ${which} mail.`),
      mtaTag: token.optional().describe('Sent as `MTA-Tag` (rspamd settings can match it with `request_header`).'),
    })
    .prefault({});

const policy = z.enum(['tempfail', 'accept', 'reject']);

export const options = z.strictObject({
  servers: z.array(target).min(1).default([{ host: '127.0.0.1', port: 11333 }]).describe('rspamd normal workers (`/checkv2`), tried in order: the first that accepts the connection scans (failover happens before the first byte of the message is sent).'),
  connectTimeout: duration().default(2_000).describe('Time to connect to one rspamd before the next is tried.'),
  timeout: duration().default(15_000).describe('Longest rspamd may stall: not reading the message, or not answering after its end. Keep above rspamd\'s `task_timeout` (8 s) and below the plugin entry\'s `timeout`.'),
  onError: policy.default('tempfail').describe('What happens when no verdict can be had (rspamd down, timing out, answering an error or nonsense): `tempfail` = 451 4.7.0; `accept` delivers, tagged `unscanned (reason)` in the status header; `reject` = 554 5.7.0.'),
  maxSize: size().default(20 * 1024 * 1024).describe('Largest message sent to rspamd (keep at or below rspamd\'s `max_message`).'),
  onOversize: policy.default('accept').describe('What happens to a message above `maxSize`: `accept` delivers it unscored, tagged `unscanned (too large)`; `tempfail` = 452 4.3.4; `reject` = 552 5.3.4.'),
  inbound: direction('inbound').describe('Mail from anonymous clients (neither authenticated nor from a trusted network).'),
  outbound: direction('outbound').describe('Mail from authenticated users (sent with rspamd\'s `User` header) and trusted networks.'),
  trustedNetworks: networkList().describe('Clients whose mail counts as outbound, besides authenticated ones.'),
  relayPolicyTrust: z.boolean().default(true).describe('Also count relay-policy\'s `trustedNetworks` (read from the relay config) as outbound.'),
  statusHeader: headerName('Header added to every message with the result: `No, score=3.50 required=15.00 action="no action"`, `Yes, ...` for `add header` / `rewrite subject`, or `unscanned (reason)`. Empty: none. A copy sent by the client is dropped.', 'X-Spam-Status'),
  symbolsHeader: headerName('Header listing the symbols rspamd matched with their scores, e.g. `X-Spamd-Result`. Empty (default): none (rspamd\'s milter_headers module can add its own). A copy sent by the client is dropped.', ''),
  spamHeader: headerName('Header set to `Yes` on messages rspamd wants marked (`add header`, `rewrite subject`). Empty: none. A copy sent by the client is dropped.', 'X-Spam'),
  milterHeaders: z.boolean().default(true).describe('Apply the `milter.remove_headers` and `milter.add_headers` of rspamd\'s reply (its milter_headers module\'s output).'),
  rejectText: z.string().regex(/^[ -~]+$/, 'printable ASCII').default('Spam message rejected').describe('Reply text for `reject` when rspamd gives no `messages.smtp_message`.'),
  maxHeaderBytes: z.number().int().min(64).max(8192).default(1024).describe('Longest value of one request header sent to rspamd (HELO, addresses); longer values are cut.'),
});

export type RspamdOptions = z.input<typeof options>;
export type ResolvedOptions = z.output<typeof options>;
