import type { RecipientAddress } from './recipient-address.js';

/** What a source says about one address. */
export interface SourceAnswer {
  readonly result: 'known' | 'unknown';
  /** Why, for logs and `portcullis recipients check`: `mail=alice@…`, `in list users.txt`, `250 2.1.5 from 10.0.0.5:25`. */
  readonly detail: string;
  /** The source knows every address of the domain (a list's `@domain`, a callout's catch-all). */
  readonly catchAll?: boolean;
}

/** A source could not answer (directory down, timeout, next hop down or answering 4xx). */
export class SourceUnavailable extends Error {
  constructor(readonly source: string, message: string) {
    super(message);
    this.name = 'SourceUnavailable';
  }
}

/** Whatever the lookup needs besides the address: the callout's route. */
export interface LookupContext {
  /** The MAIL FROM the probe should use for this domain, and the next hop of the domain. */
  readonly route?: (domain: string) => Promise<{ host: string; port: number; name?: string } | undefined>;
}

/** One configured source (list, ldap or callout). */
export interface RecipientSource {
  readonly name: string;
  readonly type: 'list' | 'ldap' | 'callout';
  /** Answers are cached on the shared state (ldap, callout); lists are in memory already. */
  readonly cached: boolean;
  /** Answers "known" for every address of a domain whose cached catch-all flag is set (a callout's check). */
  readonly catchAllDomains?: boolean;
  /** Throws SourceUnavailable when it cannot answer. */
  lookup(addr: RecipientAddress, ctx: LookupContext): Promise<SourceAnswer>;
  /** For `/readyz`: undefined when there is nothing to say. */
  ready?(): Promise<{ ready: boolean; detail?: string }>;
  /** For `portcullis check --connect`: a bind test and the like. */
  test?(): Promise<string>;
  close(): Promise<void>;
}

/** The plugin's logger (pino, through the core). */
export type Logger = import('@portcullis/core').PluginContext['log'];
