#!/usr/bin/env bash
# Builds the guest initramfs (an uncompressed newc cpio) and prints its path:
#   /init          the Starina guest agent (static, release build)
#   /bin/busybox   Debian's busybox-static, with a symlink per applet
#   /usr/local/bin/starina   a symlink to /init: native commands from Linux
#   /dev/console   so that PID 1 starts with a console on fds 0-2
#   /etc/passwd, /etc/group (root and nobody), and empty /proc /sys /tmp /run /root ...
#   /srv/www       linux-guest/www/ (the pages of the default profile's linux_web)
#
#   linux-guest/build-initramfs.sh
#
# Output: ${STARINA_CACHE:-$HOME/.cache/starina}/initramfs/<key>/initramfs.cpio
# where <key> hashes the agent binary, busybox, this script and linux-guest/www. Progress goes
# to stderr; the only line on stdout is the path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${STARINA_CACHE:-$HOME/.cache/starina}"
BUSYBOX=/bin/busybox
TARGET=x86_64-unknown-linux-gnu

log() { echo "build-initramfs: $*" >&2; }
die() {
    echo "build-initramfs: error: $*" >&2
    exit 1
}

# 1. Dependencies.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    log "installing busybox-static"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get install -y busybox-static >&2 ||
        { $SUDO apt-get update >&2 && $SUDO apt-get install -y busybox-static >&2; } ||
        die "could not install busybox-static"
fi
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
    die "$BUSYBOX is not the static busybox (install busybox-static)"
command -v python3 >/dev/null || die "python3 is needed to write the cpio archive"

# 2. The agent: release, statically linked. The workspace may have members
# under construction by others; if it does not load, build the agent in a
# scratch workspace that holds only the agent and the bridge.
WORKSPACE="$REPO"
if ! (cd "$REPO" && cargo metadata --no-deps --format-version 1 >/dev/null 2>&1); then
    WORKSPACE="$CACHE/agent-workspace"
    log "the main workspace does not load; building the agent in $WORKSPACE"
    mkdir -p "$WORKSPACE/linux-guest"
    ln -sfn "$REPO/bridge" "$WORKSPACE/bridge"
    ln -sfn "$REPO/linux-guest/agent" "$WORKSPACE/linux-guest/agent"
    ln -sfn "$REPO/rust-toolchain.toml" "$WORKSPACE/rust-toolchain.toml"
    sed -n '/^\[workspace.package\]/,/^$/p' "$REPO/Cargo.toml" >"$WORKSPACE/ws-package.toml"
    {
        echo '[workspace]'
        echo 'resolver = "2"'
        echo 'members = ["bridge", "linux-guest/agent"]'
        echo
        cat "$WORKSPACE/ws-package.toml"
    } >"$WORKSPACE/Cargo.toml"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$WORKSPACE/target}"
log "building starina-guest-agent (release, static)"
(cd "$WORKSPACE" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --quiet -p starina-guest-agent --target "$TARGET") >&2 ||
    die "cargo build of the agent failed"
AGENT="$TARGET_DIR/$TARGET/release/starina-guest-agent"
file "$AGENT" | grep -qE 'statically linked|static-pie linked' || die "$AGENT is not statically linked"

# 3. Cache lookup.
# Pages the default profile's Linux service serves (specs/linux_web.toml),
# at /srv/www in the guest.
WWW="$REPO/linux-guest/www"
KEY="$(cat "$AGENT" "$BUSYBOX" "${BASH_SOURCE[0]}" "$WWW"/* | sha256sum | cut -c1-16)"
OUT="$CACHE/initramfs/$KEY"
if [ -f "$OUT/initramfs.cpio" ]; then
    log "cached (key $KEY)"
    echo "$OUT/initramfs.cpio"
    exit 0
fi
mkdir -p "$OUT"

# 4. Write the archive. Python writes the newc format directly, so device
# nodes and root ownership need no root privileges or staging directory.
log "writing $OUT/initramfs.cpio"
"$BUSYBOX" --list-full | grep -vx 'linuxrc' >"$OUT/applets"
# The release profile keeps debug info (for the lead's profiling); the guest
# does not need it. The unstripped binary stays in the target dir.
strip --strip-all -o "$OUT/init" "$AGENT"
python3 - "$OUT/initramfs.cpio.tmp" "$OUT/init" "$BUSYBOX" "$OUT/applets" "$WWW" <<'PY'
import os
import stat
import sys

out_path, agent, busybox, applets_path, www = sys.argv[1:]
entries = []  # (name, mode, data, rdev_major, rdev_minor)


def add_dir(name):
    entries.append((name, stat.S_IFDIR | 0o755, b"", 0, 0))


def add_file(name, data, perm):
    entries.append((name, stat.S_IFREG | perm, data, 0, 0))


def add_symlink(name, target):
    entries.append((name, stat.S_IFLNK | 0o777, target.encode(), 0, 0))


def add_chardev(name, perm, major, minor):
    entries.append((name, stat.S_IFCHR | perm, b"", major, minor))


dirs = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "etc", "proc",
        "sys", "tmp", "run", "root", "mnt", "var"]
for d in dirs:
    add_dir(d)
add_chardev("dev/console", 0o600, 5, 1)
add_chardev("dev/null", 0o666, 1, 3)
with open(agent, "rb") as f:
    add_file("init", f.read(), 0o755)
with open(busybox, "rb") as f:
    add_file("bin/busybox", f.read(), 0o755)
# `starina CMD`: Linux programs run native commands (the agent, by that name).
add_dir("usr/local")
add_dir("usr/local/bin")
add_symlink("usr/local/bin/starina", "/init")
with open(applets_path) as f:
    for applet in sorted(set(line.strip() for line in f if line.strip())):
        if applet != "bin/busybox":
            add_symlink(applet, "/bin/busybox")
# Users a Spawn may name (`exec --user`): root, and nobody for programs
# that should own nothing.
add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
         b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
add_file("etc/hostname", b"starina-guest\n", 0o644)
add_dir("srv")
add_dir("srv/www")
for name in sorted(os.listdir(www)):
    with open(os.path.join(www, name), "rb") as f:
        add_file("srv/www/" + name, f.read(), 0o644)

mtime = 0  # reproducible archives


def header(ino, name, mode, size, nlink, rmaj, rmin):
    fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin,
              len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % v for v in fields)


def pad4(n):
    return b"\0" * ((4 - n % 4) % 4)


with open(out_path, "wb") as out:
    for ino, (name, mode, data, rmaj, rmin) in enumerate(entries, start=1):
        nlink = 2 if stat.S_ISDIR(mode) else 1
        h = header(ino, name, mode, len(data), nlink, rmaj, rmin)
        h += name.encode() + b"\0"
        out.write(h + pad4(len(h)))
        out.write(data + pad4(len(data)))
    trailer = header(0, "TRAILER!!!", 0, 0, 1, 0, 0) + b"TRAILER!!!\0"
    out.write(trailer + pad4(len(trailer)))
PY
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
log "$(stat -c %s "$OUT/initramfs.cpio") bytes, $(wc -l <"$OUT/applets") busybox applets"
echo "$OUT/initramfs.cpio"
