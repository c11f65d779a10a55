import type { PluginDefinition, RelayConfigInput } from '@portcullis/core';
import { CaptureServer, type CapturedMessage, type CaptureServerOptions } from '../servers/capture-server.js';
import { rawSend, rcptReplies, type RawSendOptions, type RawSendResult, type RcptRepliesOptions } from '../clients/raw-exchange.js';
import { RawSmtp } from '../clients/raw-smtp.js';
import { sendMail, type SendOptions, type SendResult } from '../clients/send.js';
import { startTestRelay, type TestRelay, type TestRelayOptions } from './test-relay.js';

type PluginEntryInput = NonNullable<RelayConfigInput['plugins']>[number];

export interface HostedRelayOptions {
  /**
   * Plugin definitions by name. Must hold `'relay-policy'` (the test kit does not depend on any
   * plugin package: the caller passes `@portcullis/relay-policy`), and every name `plugins` uses.
   */
  readonly builtins: Readonly<Record<string, PluginDefinition>>;
  /** The domain(s) the relay hosts, each with the capture server as next hop. Default `example.com`. */
  readonly domain?: string | readonly string[];
  /** relay-policy options besides the hosted domains (`trustedNetworks`, ...); its `domains` are added to the hosted ones. */
  readonly policy?: Readonly<Record<string, unknown>>;
  /** Route options every hosted domain gets besides its next hop. Default `{ tls: 'none' }`. */
  readonly route?: Readonly<Record<string, unknown>>;
  /** Plugin entries that run after relay-policy, in order. */
  readonly plugins?: readonly PluginEntryInput[];
  /** Plugin entries that run before relay-policy, in order. */
  readonly pluginsBefore?: readonly PluginEntryInput[];
  /** The rest of the relay config (`limits`, `listen`, `delivery`, `admin`, ...); not `plugins`. */
  readonly config?: Partial<Omit<RelayConfigInput, 'plugins'>>;
  /** Options of the capture next hop (`onRcpt`, `onData`, `server`). */
  readonly capture?: CaptureServerOptions;
  readonly spoolDir?: TestRelayOptions['spoolDir'];
  readonly configFile?: TestRelayOptions['configFile'];
  readonly logger?: TestRelayOptions['logger'];
}

export interface HostedRelay extends TestRelay {
  /** The next hop of every hosted domain. */
  readonly sink: CaptureServer;
  /** What reached the next hop so far (the sink's `messages`, the same array). */
  readonly captured: CapturedMessage[];
  /** The first hosted domain. */
  readonly domain: string;
  /** Resolves once `n` messages reached the next hop. */
  waitFor(n: number, timeoutMs?: number): Promise<CapturedMessage[]>;
  /** One message through nodemailer to this relay; from `alice@remote.test` to `bob@<domain>` unless given. */
  send(o?: Partial<Omit<SendOptions, 'port'>>): Promise<SendResult>;
  /** A raw client to this relay from `localAddress` (greeting not read yet). */
  connect(localAddress?: string): Promise<RawSmtp>;
  /** `rawSend` to this relay: one whole transaction over a raw socket. */
  rawSend(message: string | Buffer, opts?: RawSendOptions): Promise<RawSendResult>;
  /** `rcptReplies` to this relay: the reply to each RCPT TO in one session. */
  rcptReplies(recipients: readonly string[], opts?: RcptRepliesOptions): Promise<Array<{ reply: string; ms: number }>>;
  /** Stops the relay (removing its temp spool), then the next hop. `stop()` stops the relay only. */
  close(): Promise<void>;
}

/**
 * The setup most end-to-end tests share: a capture smtp-server as the next hop, and a whole relay
 * on a free loopback port whose relay-policy hosts `domain` with that next hop (plain SMTP), with
 * the plugins under test before or after it. If the relay fails to start, the sink is closed.
 */
export async function hostedRelay(o: HostedRelayOptions): Promise<HostedRelay> {
  if (!o.builtins['relay-policy']) throw new TypeError("hostedRelay: builtins must hold 'relay-policy' (pass @portcullis/relay-policy)");
  const domains = typeof o.domain === 'string' ? [o.domain] : o.domain?.length ? [...o.domain] : ['example.com'];
  const sink = await CaptureServer.start(o.capture);
  let t: TestRelay;
  try {
    const extraDomains = (o.policy?.['domains'] ?? {}) as Record<string, unknown>;
    const policy = {
      ...o.policy,
      domains: { ...Object.fromEntries(domains.map((d) => [d, { nexthop: sink.address, tls: 'none', ...o.route }])), ...extraDomains },
    };
    t = await startTestRelay({
      builtins: o.builtins,
      spoolDir: o.spoolDir,
      configFile: o.configFile,
      logger: o.logger,
      config: { ...o.config, plugins: [...(o.pluginsBefore ?? []), { use: 'relay-policy', with: policy }, ...(o.plugins ?? [])] } as Partial<RelayConfigInput>,
    });
  } catch (err) {
    await sink.close();
    throw err;
  }
  const port = t.port;
  return {
    ...t,
    sink,
    captured: sink.messages,
    domain: domains[0]!,
    waitFor: (n, ms) => sink.waitFor(n, ms),
    send: (s = {}) => sendMail({ from: 'alice@remote.test', to: `bob@${domains[0]}`, ...s, port }),
    connect: (localAddress) => RawSmtp.connect(port, '127.0.0.1', localAddress),
    rawSend: (message, opts) => rawSend(port, message, opts),
    rcptReplies: (recipients, opts) => rcptReplies(port, recipients, opts),
    async close() {
      try {
        await t.stop();
      } finally {
        await sink.close();
      }
    },
  };
}
