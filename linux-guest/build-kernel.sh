#!/usr/bin/env bash
# Builds the Starina microVM guest kernel (bzImage) from Debian's
# linux-source-6.12 package and config/microvm.config, and prints its path.
#
#   linux-guest/build-kernel.sh            # build (or reuse) and print the path
#   STARINA_CACHE=/some/dir linux-guest/build-kernel.sh
#
# The build lives outside the checkout, in
#   ${STARINA_CACHE:-$HOME/.cache/starina}/linux/
#     src-<package version>/     the unpacked source tree (shared by all keys)
#     <key>/build/               the out-of-tree build (O=)
#     <key>/bzImage              the result
# where <key> is the sha256 of (config fragment, this script, package version).
# A cached result is printed at once. Progress goes to stderr; the only line on
# stdout is the bzImage path, so `KERNEL=$(linux-guest/build-kernel.sh)` works.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRAGMENT="$HERE/config/microvm.config"
CACHE="${STARINA_CACHE:-$HOME/.cache/starina}/linux"
PKG=linux-source-6.12
TARBALL=/usr/src/linux-source-6.12.tar.xz

log() { echo "build-kernel: $*" >&2; }
die() {
    echo "build-kernel: error: $*" >&2
    exit 1
}

pkg_version() { dpkg-query -W -f='${Version}' "$PKG" 2>/dev/null || true; }

install_deps() {
    local need=()
    local p
    for p in "$PKG" bc flex bison libelf-dev libssl-dev cpio xz-utils lz4 make gcc; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
    done
    if ((${#need[@]})); then
        log "installing build dependencies: ${need[*]}"
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get install -y "${need[@]}" >&2 ||
            { $SUDO apt-get update >&2 && $SUDO apt-get install -y "${need[@]}" >&2; } ||
            die "could not install ${need[*]}"
    fi
}

# Checks that the .config at $1 honours every line of the fragment.
verify_config() {
    local config="$1" missing=() line opt
    while IFS= read -r line; do
        if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=y$ ]]; then
            opt="${BASH_REMATCH[1]}"
            grep -qx "$opt=y" "$config" || missing+=("$opt=y (got: $(grep -E "^(# )?$opt[= ]" "$config" || echo absent))")
        elif [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=[0-9]+$ ]]; then
            opt="${BASH_REMATCH[1]}"
            grep -qx "$line" "$config" || missing+=("$line (got: $(grep -E "^(# )?$opt[= ]" "$config" || echo absent))")
        elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            opt="${BASH_REMATCH[1]}"
            if grep -qE "^$opt=[ym]" "$config"; then missing+=("$opt off (got: $(grep -E "^$opt=" "$config"))"); fi
        fi
    done <"$FRAGMENT"
    if ((${#missing[@]})); then
        echo "build-kernel: error: $config does not honour $FRAGMENT:" >&2
        printf '  missing %s\n' "${missing[@]}" >&2
        echo "  (a dependency is probably off; see 'make menuconfig' / the Kconfig 'depends on' lines)" >&2
        return 1
    fi
}

VERSION="$(pkg_version)"
[ -n "$VERSION" ] || {
    install_deps
    VERSION="$(pkg_version)"
}
[ -n "$VERSION" ] || die "$PKG is not installed"

KEY="$( (
    cat "$FRAGMENT"
    cat "${BASH_SOURCE[0]}"
    echo "$PKG $VERSION"
) | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"
if [ -f "$OUT/bzImage" ]; then
    log "cached ($PKG $VERSION, key $KEY)"
    echo "$OUT/bzImage"
    exit 0
fi

install_deps
START=$(date +%s)

# One build per key at a time; a second caller waits, then finds the result.
mkdir -p "$CACHE"
exec 9>"$CACHE/$KEY.lock"
if ! flock -n 9; then
    log "another build of key $KEY is running; waiting for it"
    flock 9
fi
if [ -f "$OUT/bzImage" ]; then
    log "built meanwhile by the other caller"
    echo "$OUT/bzImage"
    exit 0
fi

# 1. Unpack the source tree once per package version.
SRC="$CACHE/src-$VERSION"
if [ ! -f "$SRC/.unpacked" ]; then
    [ -f "$TARBALL" ] || die "$TARBALL not found (is $PKG installed?)"
    log "[1/4] unpacking $TARBALL into $SRC"
    rm -rf "$SRC" "$SRC.tmp"
    mkdir -p "$SRC.tmp"
    tar -xJf "$TARBALL" -C "$SRC.tmp" --strip-components=1
    mv "$SRC.tmp" "$SRC"
    touch "$SRC/.unpacked"
else
    log "[1/4] source tree $SRC already unpacked"
fi

# 2. Configure: tinyconfig, merge the fragment, resolve dependencies, check.
BUILD="$OUT/build"
mkdir -p "$BUILD"
MAKE=(make -C "$SRC" O="$BUILD" ARCH=x86_64)
log "[2/4] configuring (tinyconfig + $(basename "$FRAGMENT")) in $BUILD"
"${MAKE[@]}" tinyconfig >"$OUT/config.log" 2>&1 || die "tinyconfig failed, see $OUT/config.log"
(cd "$BUILD" && "$SRC/scripts/kconfig/merge_config.sh" -m -O "$BUILD" "$BUILD/.config" "$FRAGMENT") \
    >>"$OUT/config.log" 2>&1 || die "merge_config.sh failed, see $OUT/config.log"
"${MAKE[@]}" olddefconfig >>"$OUT/config.log" 2>&1 || die "olddefconfig failed, see $OUT/config.log"
verify_config "$BUILD/.config" || exit 1
log "      all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$FRAGMENT") options of the fragment are honoured"

# 3. Build, logging to a file and printing a progress line every 15 s.
JOBS="$(nproc)"
log "[3/4] make -j$JOBS bzImage (log: $OUT/build.log; takes ~5 min on 2 cores)"
# In its own process group, so that an interrupted build stops entirely.
setsid "${MAKE[@]}" -j"$JOBS" bzImage >"$OUT/build.log" 2>&1 &
MAKE_PID=$!
trap 'kill -- -$MAKE_PID 2>/dev/null; exit 130' INT TERM
while kill -0 "$MAKE_PID" 2>/dev/null; do
    # `wait` on a sleep in the background lets the trap run at once.
    sleep 15 &
    wait $! || true
    kill -0 "$MAKE_PID" 2>/dev/null || break
    log "      still building... $(grep -c '^  CC ' "$OUT/build.log" || true) files compiled, $(($(date +%s) - START)) s"
done
if ! wait "$MAKE_PID"; then
    tail -n 30 "$OUT/build.log" >&2
    die "kernel build failed, full log: $OUT/build.log"
fi
trap - INT TERM

# 4. Publish the result.
verify_config "$BUILD/.config" || exit 1
cp "$BUILD/arch/x86/boot/bzImage" "$OUT/bzImage.tmp"
cp "$BUILD/.config" "$OUT/config"
mv "$OUT/bzImage.tmp" "$OUT/bzImage"
log "[4/4] built $(stat -c %s "$OUT/bzImage") byte bzImage in $(($(date +%s) - START)) s"
echo "$OUT/bzImage"
