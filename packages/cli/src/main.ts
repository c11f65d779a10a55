#!/usr/bin/env node
/**
 * The `portcullis` command.
 *
 *   portcullis start --config FILE   run a relay (logs: JSON lines on stdout)
 *   portcullis check --config FILE   validate a config; print the plugins and the hook order
 *   portcullis demo                  a relay on a built-in config, with its own next hop, to try
 *   portcullis dkim keygen D S       a DKIM key (0600) and the TXT record to publish
 *
 * Exit codes: see exit-codes.ts (0 ok, 1 failure, 64 usage, 78 config error).
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { cliVersion } from './cli-package.js';
import { ExitCode } from './exit-codes.js';
import type { Logger } from './load-relay.js';

// The relay's modules load only when a command runs: --help, --version and usage errors answer at once.
const core = () => import('@portcullis/core');
const relayModules = async () => ({ ...(await import('./load-relay.js')), ...(await import('./run-relay.js')) });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port number from 0 to 65535.');
  return n;
}

/** Exits with `code` once the logger (if any) has written everything. */
async function finish(code: number, log?: Logger): Promise<void> {
  if (log) (await import('./run-relay.js')).exit(log, code);
  else process.exit(code);
}

const program = new Command('portcullis')
  .description('Portcullis: an SMTP relay for the network edge, composed of plugins listed in one config file.')
  .version(cliVersion(), '-V, --version')
  .exitOverride()
  .showHelpAfterError('(run portcullis --help for usage)');

program
  .command('start')
  .description('run a relay from a config file; SIGTERM or SIGINT stops it gracefully')
  .requiredOption('-c, --config <file>', 'config file (YAML, or JSON if it ends in .json)')
  .addOption(new Option('--log-level <level>', 'override log.level from the config').choices(LOG_LEVELS))
  .action(async (opts: { config: string; logLevel?: string }) => {
    const [{ ConfigError, createLogger }, { loadRelay, reportConfigError, runRelay }] = await Promise.all([core(), relayModules()]);
    let log: Logger | undefined;
    try {
      const { relay } = await loadRelay(opts.config, (c) => (log = createLogger(opts.logLevel ?? c.log.level)));
      await runRelay({ relay, log: log! });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      reportConfigError(err, 'nothing was started');
      await finish(ExitCode.config, log);
    }
  });

program
  .command('check')
  .description('validate a config file and its plugins (opens no port); print the plugins and the hook order')
  .requiredOption('-c, --config <file>', 'config file (YAML, or JSON if it ends in .json)')
  .option('--json', 'print the report as JSON')
  .action(async (opts: { config: string; json?: boolean }) => {
    const [{ ConfigError, createLogger }, { loadRelay, reportConfigError }, { checkReport, formatCheckReport }] = await Promise.all([core(), relayModules(), import('./check-command.js')]);
    // Plugins may log while they set up: to stderr, so that stdout is only the report.
    const log = createLogger('warn', 2);
    try {
      const loaded = await loadRelay(opts.config, () => log);
      const report = checkReport(loaded);
      await loaded.relay.driver.close();
      process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatCheckReport(report));
      await finish(ExitCode.ok, log);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      reportConfigError(err, 'the configuration is not valid');
      await finish(ExitCode.config, log);
    }
  });

program
  .command('demo')
  .description(`run a demo relay on a built-in config: mail for @demo.example goes to a next hop inside the demo, which prints it`)
  .option('-p, --port <port>', 'relay port on 127.0.0.1', port, 2525)
  .option('--nexthop-port <port>', 'port of the demo next hop on 127.0.0.1', port, 2526)
  .option('--spool <dir>', 'spool folder (kept between runs: undelivered messages survive a restart)', './var/demo-spool')
  .addOption(new Option('--log-level <level>', 'level of the JSON logs on stderr').choices(LOG_LEVELS).default('info'))
  .action(async (opts: { port: number; nexthopPort: number; spool: string; logLevel: string }) => {
    await (await import('./demo-command.js')).runDemo(opts);
  });

program
  .command('queue')
  .description('inspect and steer the queue of a running relay: list | show ID | flush [ID] | hold ID | release ID | delete ID | bounce ID')
  .argument('<action>', 'list, show, flush, hold, release, delete or bounce')
  .argument('[id]', 'message id (from list)')
  .requiredOption('-c, --config <file>', 'the config file the relay runs with (its spool folder holds the control socket)')
  .option('--json', 'print JSON')
  .action(async (action: string, id: string | undefined, opts: { config: string; json?: boolean }) => {
    const actions = ['list', 'show', 'flush', 'hold', 'release', 'delete', 'bounce'];
    if (!actions.includes(action)) {
      process.stderr.write(`portcullis queue: unknown action "${action}"; one of ${actions.join(', ')}\n`);
      process.exit(ExitCode.usage);
    }
    const { ConfigError } = await core();
    try {
      process.exit(await (await import('./admin-commands.js')).queueCommand(action, id, opts));
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(err.message + '\n');
        process.exit(ExitCode.config);
      }
      process.stderr.write(`portcullis queue ${action}: ${(err as Error).message}\n`);
      process.exit(ExitCode.failure);
    }
  });

program
  .command('passwd')
  .description('add or replace a user in a users file (scrypt hash); the password is read from standard input')
  .argument('<file>', 'users file (created with mode 0600 if missing)')
  .argument('<user>', 'login name, e.g. alice@example.com')
  .option('--domains <list>', 'comma-separated domains this user may send from (with relay-policy senderMustMatch)')
  .action(async (file: string, user: string, opts: { domains?: string }) => {
    try {
      await (await import('./admin-commands.js')).passwd(file, user, opts);
    } catch (err) {
      process.stderr.write(`portcullis passwd: ${(err as Error).message}\n`);
      process.exit(ExitCode.failure);
    }
  });

program
  .command('tls')
  .description('TLS helpers')
  .command('selfsigned')
  .description('write key.pem and a self-signed cert.pem, for trying STARTTLS and port 465 out')
  .option('--out <dir>', 'folder to write into', './tls')
  .option('--name <host>', 'host name in the certificate', 'localhost')
  .option('--days <n>', 'validity in days', '365')
  .action(async (opts: { out: string; name: string; days: string }) => {
    try {
      await (await import('./admin-commands.js')).tlsSelfSigned(opts);
    } catch (err) {
      process.stderr.write(`portcullis tls selfsigned: ${(err as Error).message}\n`);
      process.exit(ExitCode.failure);
    }
  });

program.addCommand((await import('./dkim-command.js')).dkimCommand());

// The open-relay self-test (package @portcullis/relay-test): `portcullis relay-test HOST:PORT --domain D`.
program.addCommand((await import('@portcullis/relay-test')).relayTestCommand('relay-test', (code) => process.exit(code)));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? ExitCode.ok : ExitCode.usage);
  process.stderr.write(`portcullis: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(ExitCode.failure);
}
