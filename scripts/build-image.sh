#!/usr/bin/env bash
# Builds the container image for linux/amd64 and linux/arm64 as one manifest list with podman,
# tagged with the version from Cargo.toml, and prints each image's size.
#
# Usage: scripts/build-image.sh [--name NAME] [--push REF]
#   --name NAME  the local manifest list is NAME:VERSION (default interfaces_exporter)
#   --push REF   then pushes the list and both images to REF: a registry reference such as
#                registry.example.com/interfaces_exporter:0.1.0, or any destination podman
#                knows with its transport, e.g. oci:/tmp/layout or docker-archive:/tmp/ie.tar
#
# Both static binaries are built first by scripts/build-static.sh, and the Containerfile only
# copies them, so the build needs no registry, no network, no OCI runtime and no emulation:
# `--isolation chroot` is enough. A list of the same name from an earlier run is removed with
# its images first, so repeated builds do not pile up storage.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    echo "usage: scripts/build-image.sh [--name NAME] [--push REF]"
}

name=interfaces_exporter
push=''
while [[ $# -gt 0 ]]; do
    case "$1" in
        --name | --push)
            if [[ $# -lt 2 || -z $2 ]]; then
                echo "build-image.sh: $1 needs a value" >&2
                usage >&2
                exit 2
            fi
            if [[ $1 == --name ]]; then name=$2; else push=$2; fi
            shift 2
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build-image.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! command -v podman >/dev/null 2>&1; then
    echo "build-image.sh: podman not found (Debian package podman)" >&2
    exit 1
fi

# A `key = "value"` line of Cargo.toml's [package] table. The values used here hold no escaped
# quotes, which a full TOML parser would be needed for.
package_field() {
    local value
    value=$(sed -n '/^\[package\]/,/^\[/s/^'"$1"' *= *"\(.*\)" *$/\1/p' Cargo.toml)
    if [[ -z $value ]]; then
        echo "build-image.sh: no $1 in Cargo.toml's [package]" >&2
        exit 1
    fi
    echo "$value"
}
title=$(package_field name)
version=$(package_field version)
description=$(package_field description)
licenses=$(package_field license)
# The revision is left empty outside a git checkout (a source tarball) rather than invented.
revision=$(git rev-parse HEAD 2>/dev/null || true)
# SOURCE_DATE_EPOCH, when set, makes the label reproducible, as for other build tools.
created=$(date -u ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"} +%Y-%m-%dT%H:%M:%SZ)

scripts/build-static.sh x86_64-unknown-linux-musl
scripts/build-static.sh aarch64-unknown-linux-musl

list="$name:$version"

# The digests of a list's images, from `podman manifest inspect` (JSON, read with sed since jq
# may be missing; podman prints one key per line).
instance_digests() {
    podman manifest inspect "$1" | sed -n 's/.*"digest": *"\(sha256:[0-9a-f]*\)".*/\1/p'
}

# `podman build --manifest` adds to an existing list, so an earlier build's list would end up
# with two images per architecture. Its images are removed too; one still used by a container
# stays, with podman's message.
if podman manifest exists "$list"; then
    old=()
    for digest in $(instance_digests "$list"); do
        old+=("$(podman image inspect --format '{{.Id}}' "$list@$digest")")
    done
    podman manifest rm "$list" >/dev/null
    if [[ ${#old[@]} -gt 0 ]]; then
        podman rmi "${old[@]}" >/dev/null || true
    fi
fi

# One platform per build: each image is then squashed into a single layer holding the one
# file (--squash-all), and no intermediate images are kept (--layers=false).
for arch in amd64 arm64; do
    podman build --quiet --isolation chroot --layers=false --squash-all \
        --platform "linux/$arch" --manifest "$list" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        --build-arg "TITLE=$title" \
        --build-arg "DESCRIPTION=$description" \
        --build-arg "LICENSES=$licenses" \
        -f Containerfile . >/dev/null
done

for digest in $(instance_digests "$list"); do
    read -r id platform bytes < <(podman image inspect \
        --format '{{.Id}} {{.Os}}/{{.Architecture}} {{.Size}}' "$list@$digest")
    echo "$list $platform: image ${id:0:12}, $bytes bytes ($(((bytes + 1023) / 1024)) KiB)"
done

if [[ -n $push ]]; then
    case "$push" in
        docker://* | oci:* | oci-archive:* | docker-archive:* | dir:* | containers-storage:*)
            dest=$push ;;
        *) dest="docker://$push" ;;
    esac
    podman manifest push --all "$list" "$dest"
    echo "pushed $list to $dest"
fi
