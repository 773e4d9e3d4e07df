#!/usr/bin/env bash
# Makes a local `debian:bookworm-slim` image from Debian's own mirror, for
# machines where Docker Hub cannot be reached (docker/Dockerfile then builds
# unchanged with --pull=never):
#
#   docker/make_debian_base.sh [ENGINE [TAG]]     # ENGINE: podman (default) or docker
#
# debootstrap --variant=minbase (run as root; the host needs debootstrap and
# Debian's archive keyring), then what makes Docker's image "slim": no
# documentation, manual pages or translations (dpkg path-exclude, as the
# official image), apt without package caches or translated indexes; apt
# sources for bookworm, bookworm-updates and bookworm-security; no host
# name or resolver of the build host. The root file system is imported as
# TAG and the folder removed.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security),
# TMPDIR (where the root file system is made; default /var/tmp).
set -euo pipefail
engine=${1:-podman}
tag=${2:-debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if [ "$(id -u)" -ne 0 ]; then
    echo "error: debootstrap needs root (run as root, or pull $tag from a registry)" >&2
    exit 2
fi
if ! command -v debootstrap > /dev/null; then
    echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/debian-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    echo "error: debootstrap from $mirror failed" >&2
    exit 1
}

cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# As Docker's debian:*-slim: no documentation (copyright files kept),
# manual pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
# No package cache in the image: downloaded .deb files are removed after
# each install.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/*
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
rm -rf "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
: > "$rootfs/etc/resolv.conf"
echo localhost > "$rootfs/etc/hostname"

tar --numeric-owner -C "$rootfs" -c . | "$engine" import --change 'CMD ["bash"]' - "$tag" > /dev/null
echo "made $tag ($engine) with debootstrap from $mirror"
