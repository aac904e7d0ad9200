#!/usr/bin/env bash
# Local stand-ins for the two images docker-compose.yml pulls by default (python:3.11-slim, redis:7-alpine),
# for a machine that reaches Debian's mirror and PyPI but no image registry. Run as root (debootstrap).
#
#   docker/standins/build.sh        # prints CASTRAY_BASE_IMAGE=... and CASTRAY_REDIS_IMAGE=... lines
#   eval "$(docker/standins/build.sh)" && docker compose build && docker compose up
#
# The images are tagged by a hash of this folder and of the host's CA bundle: a second run with nothing
# changed builds nothing. The Debian mirror is the one apt already uses here (or DEBIAN_MIRROR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ca=/etc/ssl/certs/ca-certificates.crt

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(grep -hoE '^URIs: *https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null \
              | head -n1 | sed 's/^URIs: *//')" || true
fi
if [ -z "$mirror" ]; then
    mirror="$(grep -hoE '^deb +https?://[^ ]+/debian/? +bookworm' /etc/apt/sources.list 2>/dev/null \
              | head -n1 | awk '{print $2}')" || true
fi
mirror="${mirror:-http://deb.debian.org/debian}"

tag="$(cat "$here/build.sh" "$here/python.Dockerfile" "$here/redis.Dockerfile" "$ca" | sha256sum | cut -c1-12)"
rootfs="castray-standin/bookworm:$tag"
python_image="castray-standin/python:3.11-$tag"
redis_image="castray-standin/redis:7-$tag"

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$rootfs"; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "debootstrap bookworm from $mirror ..." >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,redis-server \
        bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/*
    tar -C "$work/root" -c . | docker import - "$rootfs" >/dev/null
fi

context="$(mktemp -d)"
trap 'rm -rf "$context" ${work:+"$work"}' EXIT
cp "$ca" "$context/ca-certificates.crt"
if ! have "$python_image"; then
    docker build -q -t "$python_image" --build-arg "ROOTFS=$rootfs" -f "$here/python.Dockerfile" "$context" >&2
fi
if ! have "$redis_image"; then
    docker build -q -t "$redis_image" --build-arg "ROOTFS=$rootfs" -f "$here/redis.Dockerfile" "$context" >&2
fi
echo "CASTRAY_BASE_IMAGE=$python_image"
echo "CASTRAY_REDIS_IMAGE=$redis_image"
