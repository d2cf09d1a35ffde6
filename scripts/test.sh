#!/usr/bin/env bash
# Runs the whole test suite, installing first whatever it needs (Debian packages, Rust targets).
# Several tests create network namespaces and veth pairs, so it runs as root (as CI does);
# as another user it re-runs itself with sudo.
#
# It fails when any test fails, and also when any test is ignored or filtered out: on CI
# nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi

# Debian packages the tests drive: promtool and prometheus (scrape and rule tests), iproute2
# (namespaces), curl (requests from inside a namespace), python3-yaml (manifest checks),
# python3-prometheus-client (an independent OpenMetrics parser),
# qemu-user-static (the aarch64 build), systemd (socket activation, unit verification),
# chromium (the status page in a browser), strace (syscall counts), podman (the container
# image, built with --isolation chroot, so no OCI runtime is needed), tar (reading its layers).
packages=(prometheus iproute2 curl python3 python3-yaml python3-prometheus-client qemu-user-static systemd chromium strace util-linux podman tar)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

# The static builds that the deployment tests run.
scripts/build-static.sh x86_64-unknown-linux-musl
scripts/build-static.sh aarch64-unknown-linux-musl

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "test.sh: tests failed" >&2
  exit "$status"
fi
results=$(grep -E '^test result:' "$log" || true)
if [ -z "$results" ]; then
  echo "test.sh: no test ran" >&2
  exit 1
fi
if echo "$results" | grep -Eqv ' 0 ignored; 0 measured; 0 filtered out'; then
  echo "test.sh: some tests were ignored or filtered out:" >&2
  echo "$results" >&2
  exit 1
fi
passed=$(echo "$results" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s += $1} END {print s}')
echo "test.sh: $passed passed, 0 failed, 0 skipped"
