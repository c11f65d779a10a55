#!/bin/sh
# Makes what portcullis.yaml needs and the repository does not hold: a self-signed certificate in
# tls/ and a users file with alice@example.test. Safe to run again: an existing certificate is kept,
# alice's entry is replaced (so a new ALICE_PASSWORD takes effect).
#
#   sh setup.sh                                   # into this folder
#   EDGE_RELAY_OUT=/tmp/edge sh setup.sh          # into another folder (the tests do this)
#   ALICE_PASSWORD='something else' sh setup.sh   # another password for alice
#
# The default password is for this demo only: anyone who reads this file knows it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${EDGE_RELAY_OUT:-$here}
password=${ALICE_PASSWORD:-demo-password-alice}
portcullis() { node "$here/node_modules/@portcullis/cli/dist/main.js" "$@"; }

mkdir -p "$out"
if [ -s "$out/tls/key.pem" ] && [ -s "$out/tls/cert.pem" ]; then
  echo "kept $out/tls/key.pem and $out/tls/cert.pem"
else
  portcullis tls selfsigned --out "$out/tls" --name relay.example.test
fi
printf '%s\n' "$password" | portcullis passwd "$out/users.passwd" alice@example.test
