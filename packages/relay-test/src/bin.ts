#!/usr/bin/env node
/** `portcullis-relay-test HOST:PORT --domain D [options]`: see README.md. */
import { main } from './cli.js';

process.exitCode = await main(process.argv.slice(2));
