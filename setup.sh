#!/usr/bin/env bash
# Set up a fresh machine for zray development: Debian packages the tests need (iproute2 for
# the multi-host tests in network namespaces, when running as root), then zray itself with
# its test extra (this builds the C extension in native/).
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v ip >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2
fi
pip install -e '.[test]'
