import { duration, networkList, z } from '@portcullis/core';

const domainName = z
  .string()
  .min(1)
  .transform((d) => d.toLowerCase().replace(/\.$/, ''))
  .refine((d) => /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/.test(d), 'a domain name such as example.com');

/** One DKIM key: the selector it is published under and its private key file (PEM, RSA or Ed25519). */
const selectorSchema = z
  .object({
    selector: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/, 'a DNS label such as s2026'),
    /** PEM file written by `portcullis dkim keygen`, relative to the config file. */
    key: z.string().min(1),
  })
  .strict();

export const signSchema = z
  .object({
    /** Signing domain → its selectors; every selector signs (RSA + Ed25519 dual signing, key rotation). */
    domains: z.record(domainName, z.array(selectorSchema).min(1, 'at least one selector')).default({}),
    /** Domain (one of `domains`) that signs mail whose From: domain has no key of its own. */
    fallbackDomain: domainName.optional(),
    /** Header fields to sign; default: mailauth's list (From, To, Subject, Date, Message-ID, MIME headers, ...). */
    headers: z.array(z.string().regex(/^[!-9;-~]+$/)).min(1).optional(),
    /** `header/body` canonicalization. */
    canonicalization: z.enum(['relaxed/relaxed', 'relaxed/simple', 'simple/relaxed', 'simple/simple']).default('relaxed/relaxed'),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.fallbackDomain && !s.domains[s.fallbackDomain]) ctx.addIssue({ code: 'custom', path: ['fallbackDomain'], message: `must be one of sign.domains (${Object.keys(s.domains).join(', ') || 'none configured'})` });
  });

export const verifySchema = z
  .object({
    /** Check inbound mail (SPF, DKIM, ARC, DMARC) and add Authentication-Results. */
    enabled: z.boolean().default(true),
    /** SPF `fail` (`-all`) for the MAIL FROM domain: reject at MAIL FROM (550 5.7.23), tag, or only record. */
    spfFail: z.enum(['reject', 'tag', 'none']).default('tag'),
    /** DMARC fail where the domain publishes `p=reject`. */
    dmarcReject: z.enum(['reject', 'tag', 'none']).default('reject'),
    /** DMARC fail where the domain publishes `p=quarantine`. */
    dmarcQuarantine: z.enum(['tag', 'none']).default('tag'),
    /** A DNS failure (temperror) that leaves the outcome open: 451 (try later) or accept untagged. */
    tempError: z.enum(['tempfail', 'accept']).default('tempfail'),
    /** Sender domains (MAIL FROM or From:) whose failures are only tagged, never rejected. */
    exceptions: z.array(domainName).default([]),
    /** Header added to tagged (quarantined) mail. */
    tagHeader: z.string().regex(/^[!-9;-~]+$/).default('X-Portcullis-Quarantine'),
    /** Smallest RSA key (bits) accepted in DKIM and ARC signatures. */
    minKeyBits: z.number().int().min(512).max(8192).default(1024),
  })
  .strict();

export const optionsSchema = z
  .object({
    /** authserv-id written in Authentication-Results (and stripped from incoming ones); default the relay's hostname. */
    authservId: domainName.optional(),
    /** Clients whose mail is signed and not checked (besides authenticated users); core's strict network parser. */
    trustedNetworks: networkList(),
    /** DNS answers (SPF, DKIM keys, DMARC, ARC) cached on the relay's shared state; failures never. `ttl: 0` turns it off. */
    dnsCache: z.strictObject({ ttl: duration().default(300_000), negativeTtl: duration().default(60_000) }).prefault({}),
    sign: signSchema.prefault({}),
    verify: verifySchema.prefault({}),
  })
  .strict();

export type MailauthOptions = z.output<typeof optionsSchema>;
export type SignOptions = z.output<typeof signSchema>;
export type VerifyOptions = z.output<typeof verifySchema>;
