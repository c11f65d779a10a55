"""Runs Debian's dkimverify (python3-dkim) against a DNS server on loopback, for the tests only.

dkimverify asks dnspython's default resolver, which reads /etc/resolv.conf. Here that resolver is
replaced in this process alone by one that asks only 127.0.0.1:PORT, so the keys come from the
test's dnsmasq and the machine's resolver configuration is never touched.

usage: dkimverify-loopback.py PORT INDEX < message
"""
import sys

import dns.resolver

port, index = int(sys.argv[1]), sys.argv[2]
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["127.0.0.1"]
resolver.port = port
resolver.lifetime = 3
dns.resolver.default_resolver = resolver

from dkim.dkimverify import main  # noqa: E402  (after the resolver is in place)

sys.argv = ["dkimverify", "--index", index]
main()
