#!/usr/bin/env bash
# Builds a static-pie (fully static and position-independent), stripped interfaces_exporter for
# one musl target, checks that it is one, and reports its size.
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
# plain ones), which musl's static-PIE start code applies. They go into RUSTFLAGS, appended to
# the caller's: cargo ignores the per-target variable whenever RUSTFLAGS is set (as CI sets
# it), which silently dropped them once. With --target, RUSTFLAGS reaches only the target's
# code, not build scripts.
flags="-C target-feature=+crt-static -C link-arg=--icf=all -C link-arg=--pack-dyn-relocs=relr"

# Rust makes a static-pie (position-independent, so the kernel loads it at a random address)
# for x86_64 musl, but its aarch64 musl target links a fixed-address static executable with
# crt1.o even though every object is compiled position-independent. Linking it as rustc links
# x86_64 gives the same ASLR there: musl's rcrt1.o start file, which relocates the program
# before anything else runs, and -pie without a program interpreter. Self-contained linking is
# turned off so that rustc does not add crt1.o too; the crt objects and libc.a then come from
# the same self-contained directory by hand, in the order rustc uses for x86_64.
case "$target" in
    aarch64-*)
        crt="$(rustc --print sysroot)/lib/rustlib/$target/lib/self-contained"
        # RUSTFLAGS is split at spaces, so a path holding one would break the link obscurely.
        if [[ $crt == *' '* ]]; then
            echo "build-static.sh: the toolchain path has a space, which RUSTFLAGS cannot carry: $crt" >&2
            exit 1
        fi
        flags+=" -C link-self-contained=no -C link-arg=-L$crt"
        for obj in rcrt1.o crti.o crtbeginS.o crtendS.o crtn.o; do
            flags+=" -C link-arg=$crt/$obj"
        done
        flags+=" -C link-arg=-pie -C link-arg=--no-dynamic-linker -C link-arg=-ztext"
        ;;
esac
export RUSTFLAGS="${RUSTFLAGS:-} $flags"

cargo build --release --locked --target "$target"

bin="target/$target/release/interfaces_exporter"

# Reads the unsigned little-endian integer of $3 bytes at offset $2 of file $1. Both targets
# are little-endian and od reads in the host's byte order, so this assumes a little-endian
# build host (x86_64 or aarch64), which every host that runs this script so far is.
le() {
    od -An -t "u$3" -j "$2" -N "$3" "$1" | tr -d ' '
}

# Prints why an ELF file is not a static-pie, or nothing when it is one: an ET_DYN file (so the
# kernel can load it at a random address, which is ASLR) with no PT_INTERP program header (no
# loader to find) and no DT_NEEDED entry (no shared library to load). It reads the headers with
# od rather than readelf, so the same check runs where binutils is not installed.
static_pie_problem() {
    local f=$1 phoff phentsize phnum i ph dyn_off='' dyn_size=0 tag
    if [[ $(od -An -c -N 4 "$f" | tr -d ' ') != '177ELF' || $(le "$f" 4 1) != 2 ]]; then
        echo "it is not a 64-bit ELF file"
        return
    fi
    if [[ $(le "$f" 16 2) != 3 ]]; then
        echo "its type is not ET_DYN, so it is not position-independent and has no ASLR"
        return
    fi
    phoff=$(le "$f" 32 8)
    phentsize=$(le "$f" 54 2)
    phnum=$(le "$f" 56 2)
    for ((i = 0; i < phnum; i++)); do
        ph=$((phoff + i * phentsize))
        case $(le "$f" "$ph" 4) in
            3) echo "it asks for a program interpreter (PT_INTERP)"; return ;;
            2) dyn_off=$(le "$f" $((ph + 8)) 8); dyn_size=$(le "$f" $((ph + 32)) 8) ;;
        esac
    done
    # A static-pie keeps a dynamic section for its own relocations; it must name no library.
    for ((i = 0; i < dyn_size; i += 16)); do
        tag=$(le "$f" $((dyn_off + i)) 8)
        [[ $tag == 0 ]] && break
        if [[ $tag == 1 ]]; then
            echo "it needs a shared library (DT_NEEDED)"
            return
        fi
    done
}

problem=$(static_pie_problem "$bin")
if [[ -n $problem ]]; then
    echo "build-static.sh: $bin is not a static-pie: $problem" >&2
    exit 1
fi
if command -v readelf >/dev/null 2>&1; then
    if readelf -SW "$bin" | grep -qE '\.symtab|\.debug_'; then
        echo "build-static.sh: $bin still has a symbol table; it is not stripped" >&2
        exit 1
    fi
elif command -v file >/dev/null 2>&1 && file "$bin" | grep -q 'not stripped'; then
    echo "build-static.sh: $bin is not stripped" >&2
    exit 1
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
echo "$bin: static-pie, stripped, $bytes bytes ($(((bytes + 1023) / 1024)) KiB)"
