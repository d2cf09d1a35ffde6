#!/usr/bin/env bash
# Installs the static interfaces_exporter and its systemd units, and starts the socket.
#
# Usage: scripts/install.sh [--root DIR] [--uninstall] [BINARY]
#
#   BINARY       the static binary to install; by default the musl build for this machine,
#                target/<arch>-unknown-linux-musl/release/interfaces_exporter, which is built
#                with scripts/build-static.sh when it is missing.
#   --root DIR   install under DIR instead of / and leave systemctl alone, for packaging and
#                for tests that must not touch the host.
#   --uninstall  stop and disable the units and remove what an install put in place.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dest=usr/local/bin/interfaces_exporter
unit_dir=etc/systemd/system
units=(interfaces_exporter.service interfaces_exporter.socket)

usage() {
    echo "usage: scripts/install.sh [--root DIR] [--uninstall] [BINARY]" >&2
    exit 2
}

help() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit 0
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

root=
uninstall=false
binary=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --root) [[ $# -ge 2 && -n $2 ]] || usage; root=$2; shift 2 ;;
        --root=?*) root=${1#--root=}; shift ;;
        --uninstall) uninstall=true; shift ;;
        -h | --help) help ;;
        -*) echo "install.sh: unknown option: $1" >&2; usage ;;
        *)
            [[ -z $binary ]] || { echo "install.sh: unexpected argument: $1" >&2; usage; }
            binary=$1
            shift
            ;;
    esac
done
if $uninstall && [[ -n $binary ]]; then
    echo "install.sh: --uninstall takes no BINARY" >&2
    usage
fi

# With --root the target is an image or a test directory, not this host's running systemd.
if [[ -z $root ]]; then
    [[ $EUID -eq 0 ]] || die "must run as root to install into / (or pass --root DIR)"
    # /run/systemd/system exists exactly when systemd is the running init; checking it first
    # leaves a host without systemd untouched instead of half installed.
    [[ -d /run/systemd/system ]] || die "systemd is not running here (pass --root DIR to install into a directory)"
    dest=
else
    mkdir -p "$root"
    dest=$(cd "$root" && pwd)
fi

if $uninstall; then
    if [[ -z $root ]]; then
        # Units that were never installed are not an error: uninstalling twice is harmless.
        systemctl disable --now interfaces_exporter.socket 2>/dev/null || true
        systemctl stop interfaces_exporter.service 2>/dev/null || true
    fi
    rm -f "$dest/$bin_dest"
    for unit in "${units[@]}"; do
        rm -f "$dest/$unit_dir/$unit"
    done
    if [[ -z $root ]]; then
        systemctl daemon-reload
    fi
    echo "uninstalled interfaces_exporter from ${dest:-/}"
    exit 0
fi

if [[ -z $binary ]]; then
    case "$(uname -m)" in
        aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
        *) target=x86_64-unknown-linux-musl ;;
    esac
    binary="$repo/target/$target/release/interfaces_exporter"
    if [[ ! -e $binary ]]; then
        bash "$repo/scripts/build-static.sh" "$target"
    fi
fi
[[ -f $binary && -x $binary ]] || die "not an executable file: $binary"

# Copy to a temporary name and rename it into place, so a running exporter keeps its old file
# and no one ever executes a half-written binary.
install -d -m 0755 "$dest/${bin_dest%/*}" "$dest/$unit_dir"
install -m 0755 "$binary" "$dest/$bin_dest.new"
mv -f "$dest/$bin_dest.new" "$dest/$bin_dest"
for unit in "${units[@]}"; do
    install -m 0644 "$repo/scripts/systemd/$unit" "$dest/$unit_dir/$unit"
done

if [[ -z $root ]]; then
    systemctl daemon-reload
    systemctl enable --now interfaces_exporter.socket
    # A reinstall replaces the binary; restart the service if a scrape had already started it.
    systemctl try-restart interfaces_exporter.service
    echo "installed; scrape http://localhost:9425/metrics"
else
    echo "installed interfaces_exporter under $dest (systemctl skipped)"
fi
