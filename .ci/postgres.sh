#!/usr/bin/env bash
# PostgreSQL server binaries for tests/test_postgres.py: Debian's `postgresql` package, installed only when
# initdb is not found. The test suite starts (and stops) a throwaway server of its own in a temporary
# directory; under CI=true it fails rather than skip those tests, so CI always runs them.
set -euo pipefail
have_initdb() {
    command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if ! have_initdb; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
have_initdb || { echo "postgres.sh: PostgreSQL server binaries (initdb) still not found" >&2; exit 1; }
