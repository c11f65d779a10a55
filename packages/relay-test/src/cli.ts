import net from 'node:net';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { buildCases, DEFAULT_THIRD_PARTY } from './cases.js';
import { formatJson, formatTable } from './format.js';
import { parseTarget, RelayTestConnectError, runRelayTest } from './run.js';

/** Exit codes: 0 nothing relayed, 1 something relayed, 2 usage or connection error. */
export const RelayTestExit = { ok: 0, relayed: 1, error: 2 } as const;

export interface RelayTestCliOptions {
  readonly domain: string;
  readonly thirdParty: string;
  readonly localAddress?: string;
  readonly from?: string;
  readonly helo?: string;
  readonly serverIp?: string;
  readonly timeout: number;
  readonly send?: boolean;
  readonly starttls?: boolean;
  readonly json?: boolean;
  readonly control: boolean;
  readonly only?: string[];
  readonly list?: boolean;
}

export interface Io {
  out(s: string): void;
  err(s: string): void;
}

const stdio: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

function ms(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('expected a number of milliseconds.');
  return n;
}

function ip(value: string): string {
  if (!net.isIP(value)) throw new InvalidArgumentError('expected an IP address.');
  return value;
}

function domainName(value: string): string {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?$/.test(value)) throw new InvalidArgumentError('expected a domain name such as example.com.');
  return value;
}

/**
 * Runs the test for `portcullis relay-test` and `portcullis-relay-test`: prints the table (or JSON)
 * and returns the exit code (0 nothing relayed, 1 relayed, 2 usage / connection error).
 */
export async function runRelayTestCli(target: string, o: RelayTestCliOptions, io: Io = stdio): Promise<number> {
  let host: string, port: number;
  try {
    ({ host, port } = parseTarget(target));
  } catch (err) {
    io.err(`relay-test: ${(err as Error).message}\n`);
    return RelayTestExit.error;
  }
  if (o.list) {
    const cases = buildCases({ domain: o.domain, thirdParty: o.thirdParty, serverIp: o.serverIp ?? (net.isIP(host) ? host : '192.0.2.1'), from: o.from, helo: o.helo });
    io.out(o.json ? JSON.stringify(cases, null, 2) + '\n' : cases.map((c, i) => `${String(i + 1).padStart(2)}  ${c.id.padEnd(20)} EHLO ${c.helo}  MAIL FROM:<${c.mailFrom}>  RCPT TO:<${c.rcptTo}>\n      ${c.why}\n`).join(''));
    return RelayTestExit.ok;
  }
  try {
    const report = await runRelayTest({
      host,
      port,
      domain: o.domain,
      thirdParty: o.thirdParty,
      localAddress: o.localAddress,
      from: o.from,
      helo: o.helo,
      serverIp: o.serverIp,
      timeoutMs: o.timeout,
      send: o.send,
      starttls: o.starttls,
      control: o.control,
      only: o.only,
    });
    io.out(o.json ? formatJson(report) : formatTable(report));
    return report.exitCode;
  } catch (err) {
    io.err(`relay-test: ${(err as Error).message}${err instanceof RelayTestConnectError ? ' (nothing was tested)' : ''}\n`);
    return RelayTestExit.error;
  }
}

/**
 * The `relay-test` command, for `program.addCommand(relayTestCommand())` in the portcullis CLI.
 * Its action sets `process.exitCode` (or calls `onExit` when given).
 */
export function relayTestCommand(name = 'relay-test', onExit: (code: number) => void = (c) => void (process.exitCode = c), io: Io = stdio): Command {
  return new Command(name)
    .description('open-relay self-test: try the classic relay tricks against an SMTP server (one fresh connection per case) and print a verdict per case')
    .argument('<host:port>', 'the server to test, e.g. 127.0.0.1:25 or [::1]:2525 (port 25 if omitted)')
    .requiredOption('-d, --domain <domain>', 'a domain the server hosts (accepts mail for): the decoy of the routing tricks', domainName)
    .option('-t, --third-party <domain>', 'the outside domain relaying to must be refused; keep it undeliverable', domainName, DEFAULT_THIRD_PARTY)
    .option('-l, --local-address <ip>', 'source address to bind (e.g. 127.0.0.9), to test as an untrusted client', ip)
    .option('--from <address>', 'envelope sender of the ordinary cases (default tester@<third-party>)')
    .option('--helo <name>', 'EHLO name of the ordinary cases (default client.<third-party>)')
    .option('--server-ip <ip>', "the server's IP for EHLO [ip] and the address-literal cases (default: the target's address)", ip)
    .option('--timeout <ms>', 'timeout for the connection and for each reply', ms, 20_000)
    .option('--send', 'after an accepted RCPT, also send DATA (a tiny test message) and judge by its reply')
    .option('--starttls', 'issue STARTTLS after EHLO (certificate not verified) and run the case over TLS')
    .option('--no-control', 'leave out the control case (a recipient in the hosted domain, expected to be accepted)')
    .addOption(new Option('--only <ids>', 'run only these case ids (comma-separated; see --list)').argParser((v: string) => v.split(',').map((s) => s.trim()).filter(Boolean)))
    .option('--list', 'print the cases and exit (connects to nothing)')
    .option('--json', 'print the report as JSON')
    .action(async (target: string, opts: RelayTestCliOptions) => {
      onExit(await runRelayTestCli(target, opts, io));
    });
}

/** Entry of the `portcullis-relay-test` bin; returns the exit code. */
export async function main(argv: readonly string[], io: Io = stdio): Promise<number> {
  let code: number = RelayTestExit.ok;
  const cmd = relayTestCommand('portcullis-relay-test', (c) => (code = c), io)
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(run portcullis-relay-test --help for usage)');
  try {
    await cmd.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : RelayTestExit.error;
    throw err;
  }
  return code;
}
