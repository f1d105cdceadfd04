#!/usr/bin/env bash
# Build the two local base images the end-to-end run builds lookupd's image from, without
# any container registry: a Debian root file system made by mmdebstrap from the apt mirrors
# this machine already uses, imported into podman.
#
#   localhost/lookupd-base:build    python3, python3-venv, python3-dev, gcc, libc6-dev
#   localhost/lookupd-base:runtime  python3 and libstdc++6 (numpy's wheels link it) only
#
# Both are Debian bookworm (python3.11 at /usr/bin/python3), so the venv made in the build
# stage finds its interpreter at the same path in the runtime stage. An image that exists
# already is kept; FORCE=1 rebuilds. Needs root, podman and mmdebstrap.
set -euo pipefail

SUITE=${SUITE:-bookworm}
REPOSITORY=${BASE_REPOSITORY:-localhost/lookupd-base}
SOURCES=${SOURCES:-/etc/apt/sources.list.d/debian.sources}
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

work=$(mktemp -d /tmp/lookupd-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

build_one() {
    local tag=$1 packages=$2 image="$REPOSITORY:$1"
    if [ "${FORCE:-0}" != 1 ] && podman image exists "$image"; then
        echo "$image exists (FORCE=1 rebuilds it)"
        return
    fi
    echo "== $image: $packages"
    # The essential variant has no apt: neither stage installs anything at build time, and
    # the runtime image is smaller. The merged-usr hook keeps perl out (mmdebstrap would
    # pull it in to merge /usr itself). Manuals, translations and documentation are left
    # out, the copyright files kept.
    mmdebstrap --variant=essential --format=tar --quiet \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        "$SUITE" "$work/$tag.tar" "$SOURCES" >"$work/$tag.log" 2>&1 || {
        tail -n 30 "$work/$tag.log" >&2
        exit 1
    }
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$work/$tag.tar" "$image" >/dev/null
    rm -f "$work/$tag.tar"
    podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image"
}

build_one runtime python3,libstdc++6
build_one build python3,python3-venv,python3-dev,gcc,libc6-dev
