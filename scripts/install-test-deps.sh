#!/usr/bin/env bash
# Installs the real tools the test suite checks machine-id's artifacts with, from
# Debian's packages: OpenSSH (sshd, ssh, ssh-keygen), OpenSSL, shellcheck,
# systemd-analyze, PostgreSQL, cfssl (the benchmark peer), kubectl, and buildah
# (builds the container image FROM scratch; tests/distribution/image.test.ts), zstd
# and xz (the compressed downloads).
# Idempotent: packages already present are skipped.
set -euo pipefail

want=()
need() { # need <command-or-path> <package>
  if [ "${1#/}" != "$1" ]; then [ -e "$1" ] || want+=("$2"); else command -v "$1" >/dev/null 2>&1 || want+=("$2"); fi
}
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need openssl openssl
need shellcheck shellcheck
need systemd-analyze systemd
need curl curl
need /usr/lib/postgresql postgresql
need cfssl golang-cfssl
need kubectl kubernetes-client
need python3 python3
need setfacl acl
need buildah buildah
need unshare util-linux
need /etc/ssl/certs/ca-certificates.crt ca-certificates
need zstd zstd   # the compressed downloads (build.ts, tests/e2e/install.test.ts)
need xz xz-utils
need gzip gzip

if [ "${#want[@]}" -eq 0 ]; then
  echo "test dependencies: all present"
  exit 0
fi
echo "test dependencies: installing ${want[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps postgresql from pulling in a running cluster's extras
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
echo "test dependencies: installed"
