#!/bin/sh
# Installs Debian's prometheus package (the server and promtool) for the exporter tests.
# Runs as root; refreshes the package lists once, then installs without prompting.
# Exit codes: 0 installed (or already present), 2 not root, other: apt-get's failure.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-prometheus: root is needed to install Debian's prometheus package" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's post-install script starts a system service where an init system runs; the
# policy-rc.d guard keeps that from happening so the tests start their own server only.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
if [ "$created_policy" = 1 ]; then
    rm -f "$policy"
fi
exit "$status"
