#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real: clamd (clamav-daemon), dnsmasq
# (dnsmasq-base), swaks, Postfix (for smtp-sink/smtp-source and the relay-test comparison), and
# redis-server (the shared-state tests start their own, in memory, on loopback); python3-dkim with
# dnspython, nacl and authres (the independent DKIM/ARC verifier and signer of the mailauth tests;
# nacl for Ed25519, authres for arcsign); prometheus for promtool (checks of the /metrics output
# and the alert rules of examples/monitoring; the Prometheus server it brings is never started).
# The plugins' own daemons, each started by its tests on loopback with a config they write:
# clamav-milter, opendkim (+ opendkim-tools) and python3-milter (the milter plugin); spamassassin and
# spamd; rspamd; postgrey and postfix-policyd-spf-python (the policy plugin; policyd-spf is spawned
# per connection); slapd and ldap-utils (the recipients plugin's LDAP tests, slapadd-loaded data).
# Idempotent: does nothing when every binary is already there. Needs root (CI runs as root).
set -euo pipefail
need=()
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v swaks >/dev/null || need+=(swaks)
# swaks only recommends Net::SSLeay, and --no-install-recommends below skips it: without it swaks has no STARTTLS.
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
[ -x /usr/sbin/smtp-sink ] || need+=(postfix)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
# The milter plugin's tests: clamav-milter on the test's clamd, OpenDKIM (and its key tool), and a
# modification milter written on pymilter (python3-milter, for Debian's /usr/bin/python3).
[ -x /usr/sbin/clamav-milter ] || need+=(clamav-milter)
[ -x /usr/sbin/opendkim ] || need+=(opendkim)
[ -x /usr/sbin/opendkim-genkey ] || need+=(opendkim-tools)
/usr/bin/python3 -c 'import Milter' 2>/dev/null || need+=(python3-milter)
# spamd (the daemon) and spamassassin (its rules, .pre plugin loaders and sample spam / non-spam): the
# spamassassin plugin's tests start their own spamd on loopback with --local and a site config they write.
{ [ -x /usr/sbin/spamd ] && [ -e /usr/share/spamassassin/10_default_prefs.cf ] && [ -e /usr/share/doc/spamassassin/examples/sample-spam.txt ]; } || need+=(spamassassin spamd)
[ -x /usr/sbin/postgrey ] || need+=(postgrey)
[ -x /usr/bin/policyd-spf ] || need+=(postfix-policyd-spf-python)
{ [ -x /usr/sbin/slapd ] && [ -x /usr/sbin/slapadd ]; } || need+=(slapd)
command -v ldapsearch >/dev/null || need+=(ldap-utils)
[ -x /usr/bin/rspamd ] || need+=(rspamd)
{ [ -x /usr/bin/dkimverify ] && /usr/bin/python3 -c 'import dkim, dns.resolver, nacl, authres' 2>/dev/null; } || need+=(python3-dkim python3-dnspython python3-nacl python3-authres)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Never let package scripts start daemons (clamd, freshclam, postfix, redis, rspamd) or reach out: tests start
# their own instances on loopback with their own configs.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# slapd: no default database (the tests write their own config).
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system-deps: installed ${need[*]}"
