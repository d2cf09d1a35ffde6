#!/usr/bin/env bash
# Builds a fully static, stripped interfaces_exporter for one musl target and reports its size.
#
# Usage: scripts/build-static.sh [TARGET]
#   TARGET is x86_64-unknown-linux-musl (the default) or aarch64-unknown-linux-musl.
#
# The result lands at target/TARGET/release/interfaces_exporter. It needs no libc, no program
# interpreter and no file outside /sys, which is what lets it run alone in a FROM scratch image.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    echo "usage: scripts/build-static.sh [x86_64-unknown-linux-musl|aarch64-unknown-linux-musl]"
}

[[ $# -le 1 ]] || { usage >&2; exit 2; }
target=${1:-x86_64-unknown-linux-musl}
case "$target" in
    x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-static.sh: unsupported target: $target" >&2; usage >&2; exit 2 ;;
esac

# A missing standard library for the target is the usual first failure, so install it when
# rustup manages this toolchain. A toolchain without rustup must already ship the target.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
fi

# Link with the rust-lld that ships inside the toolchain (in the host's rustlib/bin), so that
# neither a musl-gcc nor a cross C compiler is needed: Rust's musl targets carry their own
# crt objects and libc.a. The full path makes the build independent of PATH.
host=$(rustc -vV | sed -n 's/^host: //p')
lld="$(rustc --print sysroot)/lib/rustlib/$host/bin/rust-lld"
if [[ ! -x $lld ]]; then
    echo "build-static.sh: rust-lld not found at $lld (is the toolchain complete?)" >&2
    exit 1
fi
triple_env=$(tr 'a-z-' 'A-Z_' <<<"$target")
export "CARGO_TARGET_${triple_env}_LINKER=$lld"
# crt-static is already the default for musl targets; saying it keeps the build static even if
# that default changes, which upstream has discussed. Two linker options keep the binary small:
# identical code folding (--icf=all) merges functions that compiled to the same bytes, and
# RELR packs the position-independent executable's relative relocations (about 15 KB of
# plain ones), which musl's static-PIE start code applies. Both keep ASLR, unlike a non-PIE
# build. They go into RUSTFLAGS, appended to the caller's: cargo ignores the per-target
# variable whenever RUSTFLAGS is set (as CI sets it), which silently dropped them once. With
# --target, RUSTFLAGS reaches only the target's code, not build scripts.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C link-arg=--icf=all -C link-arg=--pack-dyn-relocs=relr"

cargo build --release --locked --target "$target"

bin="target/$target/release/interfaces_exporter"

# Returns success when the ELF file has a PT_INTERP program header, read straight from the
# header with od so the check works where binutils is not installed. Both targets are 64-bit
# little-endian, and od reads in the host's byte order, so this fallback assumes a
# little-endian build host (x86_64 or aarch64).
has_interp_header() {
    local f=$1 phoff phentsize phnum i type
    phoff=$(od -An -t u8 -j 32 -N 8 "$f" | tr -d ' ')
    phentsize=$(od -An -t u2 -j 54 -N 2 "$f" | tr -d ' ')
    phnum=$(od -An -t u2 -j 56 -N 2 "$f" | tr -d ' ')
    for ((i = 0; i < phnum; i++)); do
        type=$(od -An -t u4 -j $((phoff + i * phentsize)) -N 4 "$f" | tr -d ' ')
        [[ $type -eq 3 ]] && return 0
    done
    return 1
}

if command -v readelf >/dev/null 2>&1; then
    if readelf -lW "$bin" | grep -q 'INTERP'; then
        echo "build-static.sh: $bin asks for a program interpreter; it is not static" >&2
        exit 1
    fi
    if readelf -SW "$bin" | grep -qE '\.symtab|\.debug_'; then
        echo "build-static.sh: $bin still has a symbol table; it is not stripped" >&2
        exit 1
    fi
else
    if has_interp_header "$bin"; then
        echo "build-static.sh: $bin asks for a program interpreter; it is not static" >&2
        exit 1
    fi
    if command -v file >/dev/null 2>&1 && file "$bin" | grep -q 'not stripped'; then
        echo "build-static.sh: $bin is not stripped" >&2
        exit 1
    fi
fi

# A linker mistake can yield a file that looks right and crashes in its first instruction, so
# run it once: natively when the target matches this machine, else under qemu-user if present.
case "$target" in
    "$(uname -m)"-*) runner=() ;;
    aarch64-*) runner=(qemu-aarch64-static) ;;
    *) runner=(qemu-x86_64-static) ;;
esac
if [[ ${#runner[@]} -eq 0 ]] || command -v "${runner[0]}" >/dev/null 2>&1; then
    "${runner[@]}" "$bin" --version >/dev/null || {
        echo "build-static.sh: $bin does not run (${runner[*]:-natively})" >&2
        exit 1
    }
fi

bytes=$(stat -c %s "$bin")
echo "$bin: static, stripped, $bytes bytes ($(((bytes + 1023) / 1024)) KiB)"
