import path from 'node:path';
import { ConfigError, createLogger, parseConfig, Relay, type RelayConfigInput } from '@portcullis/core';
import { cliPackageDir } from './cli-package.js';
import { pluginPath } from './project-import.js';
import { DemoNextHop } from './demo-next-hop.js';
import { reportConfigError } from './load-relay.js';
import { exit, ExitCode } from './exit-codes.js';
import { runRelay } from './run-relay.js';

export interface DemoOptions {
  readonly port: number;
  readonly nexthopPort: number;
  readonly spool: string;
  readonly logLevel: string;
}

export const DEMO_DOMAIN = 'demo.example';
const HOST = '127.0.0.1';

/** The built-in demo config: what a person would write in portcullis.yaml for the same relay. */
export function demoConfig(o: Pick<DemoOptions, 'port' | 'nexthopPort' | 'spool' | 'logLevel'>): RelayConfigInput {
  return {
    hostname: 'relay.demo.example',
    listen: [{ name: 'demo', host: HOST, port: o.port, greetingDelay: 0 }],
    spool: { dir: o.spool },
    delivery: { retrySchedule: ['5s', '30s', '1m'] },
    log: { level: o.logLevel as 'info' },
    plugins: [
      {
        use: 'relay-policy',
        with: {
          domains: { [DEMO_DOMAIN]: { nexthop: `${HOST}:${o.nexthopPort}`, tls: 'none' } },
          trustedNetworks: [],
        },
      },
    ],
  };
}

/**
 * `portcullis demo`: the relay on a built-in config, with its next hop in the same process.
 * stdout is for the person (banner, messages as they arrive); the JSON logs go to stderr.
 */
export async function runDemo(o: DemoOptions): Promise<void> {
  const spool = path.resolve(o.spool);
  const log = createLogger(o.logLevel, 2);

  // The next hop first: its port goes into the config (`--nexthop-port 0` takes any free one), and
  // messages left in the spool by an earlier run are delivered as soon as the relay starts.
  const nexthop = new DemoNextHop(HOST, o.nexthopPort);
  let nexthopPort: number;
  try {
    nexthopPort = await nexthop.start();
  } catch (err) {
    process.stderr.write(`portcullis demo: cannot start the demo next hop on ${HOST}:${o.nexthopPort}: ${(err as Error).message}\n  (choose another port with --nexthop-port)\n`);
    return exit(log, ExitCode.failure);
  }

  let relay: Relay;
  try {
    const config = parseConfig(demoConfig({ ...o, nexthopPort, spool }), '<built-in demo config>');
    relay = await Relay.create({ config, logger: log, resolveFrom: [process.cwd(), ...pluginPath(), cliPackageDir] });
  } catch (err) {
    await nexthop.stop();
    if (err instanceof ConfigError) {
      reportConfigError(err, 'the demo did not start');
      return exit(log, ExitCode.config);
    }
    throw err;
  }

  await runRelay({
    relay,
    log,
    onReady: () => {
      process.stdout.write(banner(relay.addresses()[0]!.port, nexthopPort, spool));
    },
    onStopped: () => nexthop.stop(),
  });
}

function banner(port: number, nexthopPort: number, spool: string): string {
  const relay = `${HOST}:${port}`;
  const hop = `${HOST}:${nexthopPort}`;
  const w = Math.max(relay.length, hop.length);
  const indent = ' '.repeat(13 + w + 2);
  return [
    '',
    'Portcullis demo relay is running.',
    '',
    `  relay      ${relay.padEnd(w)}  SMTP without TLS; accepts mail for @${DEMO_DOMAIN} from anyone,`,
    `${indent}refuses every other domain (550 5.7.1 Unable to relay)`,
    `  next hop   ${hop.padEnd(w)}  a mail server inside this demo; prints each message it gets, below`,
    `  spool      ${spool}`,
    `  logs       JSON lines on stderr (add 2>/dev/null to hide them)`,
    '',
    'Try it from another shell:',
    `  swaks --server ${relay} --to user@${DEMO_DOMAIN} --from you@example.org`,
    `  swaks --server ${relay} --to someone@example.net --from you@example.org    # refused: not an open relay`,
    '',
    'Stop with Ctrl-C.',
    '',
  ].join('\n') + '\n';
}
