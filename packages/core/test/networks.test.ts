import assert from 'node:assert/strict';
import { NetworkList, NetworkSyntaxError, networkList, parseConfig, parseNetwork, z } from '../src/index.js';
import { canUseProxyTrust, PINNED_EXPECTS_PROXY_SHA256, PINNED_PROXY_ALLOWED_SHA256, proxyTrustLibraryHashes } from '../src/adapter/smtp-server.js';
import { installedSmtpServerVersion, PINNED_SMTP_SERVER_VERSION } from '../src/adapter/smtp-server.js';

function refusal(value: unknown): string {
  try {
    parseNetwork(value);
  } catch (err) {
    assert.ok(err instanceof NetworkSyntaxError, String(err));
    return err.message;
  }
  assert.fail(`${JSON.stringify(value)} was accepted`);
}

describe('network parser (the one every trust option uses)', () => {
  it('accepts full IPv4/IPv6 addresses and CIDRs and prints them canonically', () => {
    assert.equal(parseNetwork('10.0.0.0/8').text, '10.0.0.0/8');
    assert.equal(parseNetwork('192.0.2.7').text, '192.0.2.7/32');
    assert.equal(parseNetwork(' 127.0.0.1 ').text, '127.0.0.1/32');
    assert.equal(parseNetwork('0.0.0.0/0').text, '0.0.0.0/0');
    assert.equal(parseNetwork('FD00:0:0::/8').text, 'fd00::/8');
    assert.equal(parseNetwork('::1').text, '::1/128');
    assert.equal(parseNetwork('2001:db8::/32').text, '2001:db8::/32');
  });

  it('refuses inet_aton shorthand and shows the full form the operator meant', () => {
    assert.equal(
      refusal('192.168.1/24'),
      '"192.168.1/24" is shorthand, which different software reads differently (inet_aton and ipaddr.js read it as 192.168.0.1/24, not 192.168.1.0/24); write all four parts, e.g. 192.168.1.0/24',
    );
    assert.equal(refusal('127.1'), '"127.1" is shorthand, which different software reads differently; write all four parts: the address 127.0.0.1 (as inet_aton reads it) or the network 127.1.0.0/16');
    assert.match(refusal('10'), /shorthand.*the network 10\.0\.0\.0\/8/);
  });

  it('refuses host bits set, naming both the network and the single address', () => {
    assert.equal(refusal('10.0.0.5/8'), '"10.0.0.5/8" has host bits set: write the network 10.0.0.0/8, or the one address 10.0.0.5/32');
    assert.equal(refusal('fd00::1/8'), '"fd00::1/8" has host bits set: write the network fd00::/8, or the one address fd00::1/128');
  });

  it('refuses ambiguous forms: leading zeros, hex parts, zone ids, IPv4-mapped IPv6, bad prefixes', () => {
    assert.equal(refusal('010.0.0.1'), '"010.0.0.1" has a part with a leading zero, which some software reads as octal; write 10.0.0.1');
    assert.match(refusal('0x7f.0.0.1'), /hexadecimal.*e\.g\. 127\.0\.0\.1/);
    assert.match(refusal('fe80::1%eth0'), /zone id.*fe80::1/);
    assert.match(refusal('::ffff:10.0.0.1'), /IPv4-mapped.*\(10\.0\.0\.1\)/);
    assert.match(refusal('10.0.0.0/08'), /bad prefix length "\/08"/);
    assert.match(refusal('10.0.0.0/33'), /bad prefix length "\/33": expected a whole number 0-32/);
    assert.match(refusal('::/129'), /0-128/);
    assert.match(refusal('256.1.1.1'), /each of the four parts must be 0-255/);
    assert.match(refusal('not-an-ip'), /"not-an-ip" is not an IP address/);
    assert.match(refusal(''), /empty value/);
  });

  it('has no wildcard: "*" and "any" are refused with the explicit spelling', () => {
    for (const w of ['*', 'any', 'ALL']) assert.match(refusal(w), /there is no wildcard; to mean every address, write 0\.0\.0\.0\/0 \(and ::\/0 for IPv6\)/);
  });

  it('tells to quote a value YAML read as a number', () => {
    assert.match(refusal(127.1), /^got the number 127\.1: YAML reads an unquoted value like 127\.1 or 10 as a number; write the full address in quotes/);
  });

  it('matches IPv4, single addresses, IPv6 and IPv4-mapped IPv6 clients', () => {
    const nets = NetworkList.parse(['10.0.0.0/8', '192.0.2.7', 'fd00::/8']);
    assert.equal(nets.contains('10.1.2.3'), true);
    assert.equal(nets.contains('::ffff:10.1.2.3'), true);
    assert.equal(nets.contains('192.0.2.7'), true);
    assert.equal(nets.contains('192.0.2.8'), false);
    assert.equal(nets.contains('fd12::1'), true);
    assert.equal(nets.contains('2001:db8::1'), false);
    assert.equal(nets.contains('not an ip'), false);
    assert.equal(nets.everything, false);
    assert.equal(NetworkList.parse(['::/0']).everything, true);
    assert.deepEqual(nets.toStrings(), ['10.0.0.0/8', '192.0.2.7/32', 'fd00::/8']);
    assert.equal(new NetworkList([]).contains('127.0.0.1'), false);
  });

  it('answers the same for a client address parsed once and shared by every list, also after the shared parse cache is emptied', () => {
    const a = NetworkList.parse(['10.0.0.0/8']);
    const b = NetworkList.parse(['2001:db8::/32', '10.9.1.1']);
    const c = NetworkList.parse(['10.9.0.0/16', '::1']);
    const ask = () => [a, b, c].map((l) => ['10.9.1.1', '::ffff:10.9.1.1', ' 10.9.1.1 ', '2001:db8::5', '::1', 'junk', ''].map((ip) => l.contains(ip)));
    const first = ask();
    // IPv4-mapped clients match their IPv4 networks; white space around the text is ignored; junk is no address.
    assert.deepEqual(first, [
      [true, true, true, false, false, false, false],
      [true, true, true, true, false, false, false],
      [true, true, true, false, true, false, false],
    ]);
    assert.deepEqual(ask(), first, 'the second answer, from the cache');
    for (let i = 0; i < 5000; i++) a.contains(`192.0.${i >> 8}.${i & 255}`);
    assert.deepEqual(ask(), first, 'after the cache was emptied for being full');
  });

  it('reports every bad entry of a list at its own index through the zod helper', () => {
    const r = z.strictObject({ trusted: networkList() }).safeParse({ trusted: ['10.0.0.0/8', '192.168.1/24', '10.0.0.5/8'] });
    assert.equal(r.success, false);
    assert.deepEqual(r.error!.issues.map((i) => i.path), [['trusted', 1], ['trusted', 2]]);
    const single = z.strictObject({ trusted: networkList() }).safeParse({ trusted: '10.0.0.0/8' });
    assert.match(single.error!.issues[0]!.message, /expected a list of networks.*a single value: put it in a list/);
    assert.deepEqual(z.strictObject({ trusted: networkList() }).parse({}).trusted.toStrings(), []);
  });

  it('parses listener proxy lists with it: shorthand in xclient is a config error naming the key', () => {
    assert.throws(() => parseConfig({ listen: [{ port: 25, xclient: ['127.0.0.1', '127.1'] }] }, 'r.yaml'), /^ConfigError: r\.yaml: listen\[0\]\.xclient\[1\]: "127\.1" is shorthand/);
    assert.throws(() => parseConfig({ listen: [{ port: 25, proxyProtocol: ['*'] }] }, 'r.yaml'), /r\.yaml: listen\[0\]\.proxyProtocol\[0\]: "\*" is not accepted: there is no wildcard/);
    assert.throws(() => parseConfig({ listen: [{ port: 25, xforward: ['10.0.0.5/8'] }] }, 'r.yaml'), /r\.yaml: listen\[0\]\.xforward\[0\]: "10\.0\.0\.5\/8" has host bits set/);
    assert.deepEqual(parseConfig({ listen: [{ port: 25, xclient: ['127.0.0.0/8'] }] }).listen[0]!.xclient.toStrings(), ['127.0.0.0/8']);
  });
});

describe('proxy trust pinning', () => {
  it('replaces exactly the smtp-server methods it was written against (fails when the library changes)', () => {
    assert.equal(installedSmtpServerVersion(), PINNED_SMTP_SERVER_VERSION);
    assert.deepEqual(proxyTrustLibraryHashes(), { proxyCommandAllowed: PINNED_PROXY_ALLOWED_SHA256, expectsProxyHeader: PINNED_EXPECTS_PROXY_SHA256 });
    assert.equal(canUseProxyTrust(), true);
  });
});
