/**
 * @portcullis/cli: the `portcullis` command (bin: dist/main.js). The pieces below are exported for
 * embedders and tests; the command itself runs only from main.js.
 */
export { ExitCode, exitCodeForSignal } from './exit-codes.js';
export { cliPackageDir } from './cli-package.js';
export { describePluginSource } from './plugin-source.js';
export { loadRelay, reportConfigError } from './load-relay.js';
export { runRelay, type RunOptions } from './run-relay.js';
export { checkReport, formatCheckReport, type CheckReport } from './check-command.js';
export { demoConfig, runDemo, DEMO_DOMAIN, type DemoOptions } from './demo-command.js';
export { DemoNextHop } from './demo-next-hop.js';
