#!/usr/bin/env bash
# Builds the guest's Debian 12 (bookworm) root file system and prints its path:
# a sparse 4 GiB raw ext4 image (no partition table) that the guest agent
# switches root into when the kernel command line has `starina.root=/dev/vda`.
#
#   linux-guest/build-rootfs.sh
#
# Contents: mmdebstrap's `minbase` variant plus the packages listed in
# linux-guest/rootfs/packages, from the Debian mirrors the host's own apt
# sources name (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list);
# a user `starina` (uid 1000, home /home/starina, shell /bin/bash); /srv/www
# (linux-guest/www); an empty /mnt/starina (the virtio-fs share); /etc/hostname;
# /init, a symlink to /run/starina/agent, where the agent puts a copy of
# itself (the image does not hold the agent); apt's caches and lists emptied.
#
# /etc/hosts has no ::1 line: the guest kernel has no IPv6.
#
# Output: ${STARINA_CACHE:-$HOME/.cache/starina}/rootfs/<key>/rootfs.ext4 where
# <key> hashes this script, the package list, linux-guest/www, the host's apt
# sources and mmdebstrap's version. The image is built in a temporary
# directory and renamed into place: a killed build leaves no half cache.
# Progress goes to stderr; the only line on stdout is the path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${STARINA_CACHE:-$HOME/.cache/starina}"
PACKAGES_FILE="$HERE/rootfs/packages"
WWW="$HERE/www"
SUITE=bookworm
IMAGE_SIZE=4G
HOSTNAME_IN_GUEST=starina-guest

log() { echo "build-rootfs: $*" >&2; }
die() {
    echo "build-rootfs: error: $*" >&2
    exit 1
}

# The host's apt sources: mmdebstrap gets these files as its mirrors, so the
# guest comes from wherever the host's Debian packages come from.
host_sources() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && echo "$f"
    done
    if [ -f /etc/apt/sources.list ] && grep -qE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
        echo /etc/apt/sources.list
    fi
}

# The package list without comments and blank lines, comma separated.
package_list() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$PACKAGES_FILE" | paste -sd, -
}

# 1. Inputs and the cache key (cheap: a cached image is found in well under
# a second).
[ -f "$PACKAGES_FILE" ] || die "no package list at $PACKAGES_FILE"
mapfile -t SOURCES < <(host_sources)
[ "${#SOURCES[@]}" -gt 0 ] ||
    die "the host has no apt sources (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list)"
grep -qw "$SUITE" "${SOURCES[@]}" ||
    die "no apt source of the host names Debian $SUITE (${SOURCES[*]}); the guest root is Debian 12 from the host's mirrors"
MMDEBSTRAP_VERSION="$(dpkg-query -W -f='${Version}' mmdebstrap 2>/dev/null || true)"
KEY="$({
    cat "${BASH_SOURCE[0]}" "$PACKAGES_FILE"
    (cd "$WWW" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum)
    for f in "${SOURCES[@]}"; do echo "$f" && cat "$f"; done
    echo "mmdebstrap $MMDEBSTRAP_VERSION"
} | sha256sum | cut -c1-16)"
OUT="$CACHE/rootfs/$KEY"
if [ -f "$OUT/rootfs.ext4" ]; then
    log "cached (key $KEY)"
    echo "$OUT/rootfs.ext4"
    exit 0
fi

# 2. Tools.
[ "$(id -u)" -eq 0 ] || die "building the root file system needs root (mmdebstrap --mode=root, device nodes, owners)"
if [ -z "$MMDEBSTRAP_VERSION" ] || ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap"
    apt-get install -y --no-install-recommends mmdebstrap >&2 ||
        { apt-get update >&2 && apt-get install -y --no-install-recommends mmdebstrap >&2; } ||
        die "could not install mmdebstrap"
    # The key names the version that builds the image.
    exec "${BASH_SOURCE[0]}" "$@"
fi
command -v mke2fs >/dev/null && command -v e2fsck >/dev/null || die "mke2fs and e2fsck are needed (apt-get install e2fsprogs)"

# One build per key at a time; a second caller waits, then finds the result.
mkdir -p "$CACHE/rootfs"
exec 9>"$CACHE/rootfs/$KEY.lock"
if ! flock -n 9; then
    log "another build of key $KEY is running; waiting for it"
    flock 9
fi
if [ -f "$OUT/rootfs.ext4" ]; then
    log "built meanwhile by the other caller"
    echo "$OUT/rootfs.ext4"
    exit 0
fi
# Leftovers of killed builds of this key (never a cache entry: those are
# only ever made by the rename at the end). A build killed with SIGKILL may
# leave mmdebstrap's mounts (/proc, /sys, /dev) in its tree: those go first,
# deepest first, and rm never crosses into a mount.
remove_work_dir() {
    local dir="$1" mnt
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt" || true; done
    rm -rf --one-file-system "$dir"
}
for old in "$CACHE"/rootfs/.????????????????.??????; do
    name="${old##*/}"
    [[ -d "$old" && "$name" =~ ^\.([0-9a-f]{16})\.[A-Za-z0-9]{6}$ ]] || continue
    old_key="${BASH_REMATCH[1]}"
    if [ "$old_key" = "$KEY" ]; then
        log "removing $old (a killed build's)"
        remove_work_dir "$old"
    else
        # Another key's: only if no build of that key holds its lock.
        (flock -n 8 && log "removing $old (a killed build's)" && remove_work_dir "$old") \
            8>"$CACHE/rootfs/$old_key.lock" || true
    fi
done
WORK="$(mktemp -d "$CACHE/rootfs/.$KEY.XXXXXX")"
chmod 0755 "$WORK"
trap 'remove_work_dir "$WORK"' EXIT
trap 'exit 130' INT TERM
START=$(date +%s)

# 3. Debian. mmdebstrap runs apt and dpkg in a chroot of the tree; the hooks
# run on the host with the tree as "$1".
log "[1/4] mmdebstrap $SUITE (minbase + $(package_list | tr ',' ' ')) from ${SOURCES[*]}"
mmdebstrap --mode=root --variant=minbase --include="$(package_list)" \
    --customize-hook='chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash starina' \
    --customize-hook="mkdir -p \"\$1/srv/www\" && cp -r \"$WWW/.\" \"\$1/srv/www/\" && chmod -R a+rX \"\$1/srv/www\"" \
    --customize-hook='mkdir -p "$1/mnt/starina" "$1/root" && chmod 0700 "$1/root"' \
    --customize-hook="echo $HOSTNAME_IN_GUEST >\"\$1/etc/hostname\"" \
    --customize-hook="printf '127.0.0.1\tlocalhost\n127.0.1.1\t$HOSTNAME_IN_GUEST\n' >\"\$1/etc/hosts\"" \
    --customize-hook='rm -f "$1/etc/resolv.conf"' \
    --customize-hook='printf "/dev/vda\t/\text4\trw\t0\t1\n" >"$1/etc/fstab"' \
    --customize-hook='ln -sfn /run/starina/agent "$1/init"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
    "$SUITE" "$WORK/root" "${SOURCES[@]}" >&2 &
# In the background, so that a signal is handled at once: mmdebstrap gets it
# and cleans up (its mounts) before the tree is removed.
MMDEBSTRAP_PID=$!
trap 'kill -TERM $MMDEBSTRAP_PID 2>/dev/null; wait $MMDEBSTRAP_PID; exit 130' INT TERM
wait $MMDEBSTRAP_PID || die "mmdebstrap failed (see above)"
trap 'exit 130' INT TERM

# 4. The ext4 image: sparse, files copied in by mke2fs (no loop mount).
log "[2/4] mke2fs -t ext4 -d ($(du -sh "$WORK/root" | cut -f1) of files) into a $IMAGE_SIZE sparse image"
truncate -s "$IMAGE_SIZE" "$WORK/rootfs.ext4"
mke2fs -q -t ext4 -L starina-root -d "$WORK/root" -F "$WORK/rootfs.ext4" >&2 ||
    die "mke2fs failed"
log "[3/4] e2fsck -fn"
e2fsck -fn "$WORK/rootfs.ext4" >&2 || die "e2fsck found errors in the new image"
remove_work_dir "$WORK/root"

# 5. Into the cache, atomically.
log "[4/4] $(du -h "$WORK/rootfs.ext4" | cut -f1) used of $IMAGE_SIZE; into the cache after $(($(date +%s) - START)) s"
rm -rf "$OUT" # no rootfs.ext4 in it (checked under the lock): not a cache entry
mv "$WORK" "$OUT"
trap - EXIT
echo "$OUT/rootfs.ext4"
