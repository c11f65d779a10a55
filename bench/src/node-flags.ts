/**
 * The V8 flags the `portcullis` command starts Node with (its shebang; packages/cli/README.md,
 * "Memory"), so that the benchmarks measure the relay as it runs in production.
 */
export const RELAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
