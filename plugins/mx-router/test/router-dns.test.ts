import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { MxRouter, OwnAddresses, type MxRouterOptions } from '../src/index.js';
import { Dnsmasq } from './support/dnsmasq.js';
import { ServfailUpstream } from './support/servfail-upstream.js';

const PORT = 2525;

describe('MX routing against a real DNS server (dnsmasq on loopback)', () => {
  let dns: Dnsmasq;
  let servfail: ServfailUpstream;
  let resolver: Resolver;

  before(async () => {
    servfail = await ServfailUpstream.start();
    dns = await Dnsmasq.start({
      lines: [
        'mx-host=example.test,mx2.example.test,20',
        'mx-host=example.test,mx1.example.test,10',
        'host-record=mx1.example.test,127.0.0.21',
        'host-record=mx2.example.test,127.0.0.22,::1',
        'mx-host=equal.test,a.equal.test,10',
        'mx-host=equal.test,b.equal.test,10',
        'mx-host=equal.test,c.equal.test,20',
        'host-record=a.equal.test,127.0.0.31',
        'host-record=b.equal.test,127.0.0.32',
        'host-record=c.equal.test,127.0.0.33',
        'host-record=implicit.test,127.0.0.23',
        'host-record=dual.test,127.0.0.40,::1',
        'host-record=v6only.test,::1',
        'address=/nx.test/',
        'mx-host=nullmx.test,.,0',
        `server=/servfail.test/${servfail.target}`,
        'server=/timeout.test/127.0.0.1#9',
        'mx-host=partial.test,gone.partial.test,10',
        'mx-host=partial.test,ok.partial.test,20',
        'host-record=ok.partial.test,127.0.0.24',
        'mx-host=noaddr.test,gone1.noaddr.test,10',
        'mx-host=noaddr.test,gone2.noaddr.test,20',
        'mx-host=mxtimeout.test,host.timeout.test,10',
        'txt-record=empty.test,nothing here',
        'host-record=xn--bcher-kva.test,127.0.0.41',
      ],
    });
    resolver = new Resolver({ timeout: 300, tries: 1 });
    resolver.setServers([dns.server]);
  });
  after(async () => {
    await dns?.stop();
    await servfail?.close();
  });

  function router(over: Partial<MxRouterOptions> = {}, listen: string[] = []): MxRouter {
    return new MxRouter(resolver, { port: PORT, ipPreference: 'ipv4-first', tls: 'opportunistic', maxMxHosts: 10, maxAddresses: 20, ownAddresses: () => new OwnAddresses(listen, [], []), ...over });
  }
  const hostsOf = (r: unknown) => {
    assert.ok(r && typeof r === 'object' && 'hosts' in r, `expected a next hop, got ${JSON.stringify(r)}`);
    return (r as { hosts: Array<{ host: string; port: number }> }).hosts.map((h) => `${h.host}:${h.port}`);
  };

  it('lists every address of every MX host, most preferred host first, at the configured port', async () => {
    const hop = await router().route('Example.TEST.');
    assert.deepEqual(hostsOf(hop), ['127.0.0.21:2525', '127.0.0.22:2525', '::1:2525']);
    assert.equal((hop as { name: string }).name, 'mx:example.test');
    assert.equal((hop as { tls: string }).tls, 'opportunistic');
  });

  it('shuffles MX hosts of equal preference and keeps the backup last', async () => {
    // DNS gives the two equal records in some order; random 0 swaps them, random 0.999 keeps them.
    const swapped = hostsOf(await router({ random: () => 0 }).route('equal.test'));
    const kept = hostsOf(await router({ random: () => 0.999 }).route('equal.test'));
    assert.deepEqual([swapped, kept].map((h) => h.join(' ')).sort(), [
      '127.0.0.31:2525 127.0.0.32:2525 127.0.0.33:2525',
      '127.0.0.32:2525 127.0.0.31:2525 127.0.0.33:2525',
    ]);
  });

  it('follows the IP preference: IPv6 first, or one family only', async () => {
    assert.deepEqual(hostsOf(await router({ ipPreference: 'ipv6-first' }).route('dual.test')), ['::1:2525', '127.0.0.40:2525']);
    assert.deepEqual(hostsOf(await router({ ipPreference: 'ipv4-first' }).route('dual.test')), ['127.0.0.40:2525', '::1:2525']);
    assert.deepEqual(hostsOf(await router({ ipPreference: 'ipv4-only' }).route('dual.test')), ['127.0.0.40:2525']);
    assert.deepEqual(hostsOf(await router({ ipPreference: 'ipv6-only' }).route('dual.test')), ['::1:2525']);
    assert.deepEqual(await router({ ipPreference: 'ipv4-only' }).route('v6only.test'), {
      kind: 'reject',
      reply: { code: 550, enhanced: '5.1.2', text: 'Domain v6only.test has no MX and no IPv4 address record' },
    });
  });

  it('uses the domain\'s own address when it has no MX record (implicit MX)', async () => {
    assert.deepEqual(hostsOf(await router().route('implicit.test')), ['127.0.0.23:2525']);
  });

  it('fails permanently with 556 5.1.10 on a null MX', async () => {
    assert.deepEqual(await router().route('nullmx.test'), { kind: 'reject', reply: { code: 556, enhanced: '5.1.10', text: 'Domain nullmx.test accepts no mail (null MX, RFC 7505)' } });
  });

  it('fails permanently with 550 5.1.2 on NXDOMAIN', async () => {
    assert.deepEqual(await router().route('nx.test'), { kind: 'reject', reply: { code: 550, enhanced: '5.1.2', text: 'Domain nx.test does not exist (DNS: NXDOMAIN)' } });
    assert.deepEqual(await router().route('never-configured.test'), { kind: 'reject', reply: { code: 550, enhanced: '5.1.2', text: 'Domain never-configured.test does not exist (DNS: NXDOMAIN)' } });
  });

  it('fails permanently when the domain exists with neither MX nor address', async () => {
    assert.deepEqual(await router().route('empty.test'), { kind: 'reject', reply: { code: 550, enhanced: '5.1.2', text: 'Domain empty.test has no MX and no IPv4 or IPv6 address record' } });
  });

  it('defers with 451 4.4.3 on SERVFAIL and on a timeout', async () => {
    assert.deepEqual(await router().route('servfail.test'), { kind: 'tempfail', reply: { code: 451, enhanced: '4.4.3', text: 'MX lookup for servfail.test failed (DNS: SERVFAIL), will retry' } });
    assert.ok(servfail.queries > 0, 'the SERVFAIL came from the upstream, through dnsmasq');
    assert.deepEqual(await router().route('timeout.test'), { kind: 'tempfail', reply: { code: 451, enhanced: '4.4.3', text: 'MX lookup for timeout.test failed (DNS: TIMEOUT), will retry' } });
  });

  it('skips an MX host without addresses; bounces with 5.4.4 when no MX host has one', async () => {
    assert.deepEqual(hostsOf(await router().route('partial.test')), ['127.0.0.24:2525']);
    assert.deepEqual(await router().route('noaddr.test'), { kind: 'reject', reply: { code: 550, enhanced: '5.4.4', text: 'No IPv4 or IPv6 address found for any MX host of noaddr.test' } });
  });

  it('defers when the address lookup of the only MX host fails temporarily', async () => {
    assert.deepEqual(await router().route('mxtimeout.test'), { kind: 'tempfail', reply: { code: 451, enhanced: '4.4.3', text: 'Address lookup for the MX hosts of mxtimeout.test failed (DNS: TIMEOUT), will retry' } });
  });

  it('as a backup MX, uses only more preferred hosts (RFC 5321 5.1); as the best MX, reports a loop with 5.4.6', async () => {
    assert.deepEqual(hostsOf(await router({}, ['127.0.0.22:2525']).route('example.test')), ['127.0.0.21:2525']);
    assert.deepEqual(await router({}, ['127.0.0.21:2525']).route('example.test'), {
      kind: 'reject',
      reply: { code: 554, enhanced: '5.4.6', text: 'Mail for example.test loops back to myself (all remaining next hops are my own addresses)' },
    });
    // Same address, other port: not us.
    assert.deepEqual(hostsOf(await router({}, ['127.0.0.21:25']).route('example.test')), ['127.0.0.21:2525', '127.0.0.22:2525', '::1:2525']);
  });

  it('delivers to address literals without DNS, and rejects malformed ones', async () => {
    assert.deepEqual(hostsOf(await router().route('[127.0.0.9]')), ['127.0.0.9:2525']);
    assert.deepEqual(hostsOf(await router().route('[IPv6:::1]')), ['::1:2525']);
    assert.equal((await router().route('[::1]') as { kind: string }).kind, 'reject');
    assert.equal((await router().route('[300.1.1.1]') as { kind: string }).kind, 'reject');
  });

  it('looks up an internationalised domain by its A-label and refuses malformed domains', async () => {
    assert.deepEqual(hostsOf(await router().route('bücher.test')), ['127.0.0.41:2525']);
    assert.deepEqual(await router().route('bad..test'), { kind: 'reject', reply: { code: 550, enhanced: '5.1.2', text: 'Invalid recipient domain "bad..test"' } });
  });

  it('caps the address list at maxAddresses', async () => {
    assert.deepEqual(hostsOf(await router({ maxAddresses: 2 }).route('example.test')), ['127.0.0.21:2525', '127.0.0.22:2525']);
  });

  it('resolves names of configured next hops through DNS and drops our own addresses', async () => {
    const hop = { hosts: [{ host: 'mx2.example.test', port: 587 }, { host: '127.0.0.50', port: 26 }], tls: 'required' as const, auth: { user: 'u', pass: 'p' } };
    const r = await router().routeConfigured('any.test', hop, 'smarthost');
    assert.deepEqual(r, { hosts: [{ host: '127.0.0.22', port: 587 }, { host: '::1', port: 587 }, { host: '127.0.0.50', port: 26 }], tls: 'required', auth: { user: 'u', pass: 'p' }, name: 'smarthost' });
    const looped = await router({}, ['127.0.0.50:26']).routeConfigured('any.test', { hosts: [{ host: '127.0.0.50', port: 26 }], tls: 'none' }, 'smarthost');
    assert.deepEqual(looped, { kind: 'reject', reply: { code: 554, enhanced: '5.4.6', text: 'Mail for any.test loops back to myself (all remaining next hops are my own addresses)' } });
    const unresolvable = await router().routeConfigured('any.test', { hosts: [{ host: 'nothere.test', port: 25 }], tls: 'none' }, 'smarthost');
    assert.deepEqual(unresolvable, { kind: 'tempfail', reply: { code: 451, enhanced: '4.4.3', text: 'Cannot resolve the configured next hop for any.test (nothere.test: no IPv4 or IPv6 address), will retry' } });
  });
});
