#!/usr/bin/env bash
# Boots the guest kernel + initramfs directly in QEMU (`-M microvm`), without
# Starina, and drives the guest agent over a virtconsole with `scripts/starina direct`.
# This is the end-to-end check of kernel + agent + protocol, and the
# "direct boot" baseline for later benchmarks.
#
#   linux-guest/run-direct.sh                    # boot, run `uname -a`, print boot time
#   linux-guest/run-direct.sh --run 'ls -l /'    # other commands (repeatable)
#   linux-guest/run-direct.sh --selftest         # protocol self test, ends with a guest panic
#   linux-guest/run-direct.sh --serial-log F     # keep the serial console out of the terminal
#   linux-guest/run-direct.sh --root IMG ...     # boot into the Debian root IMG (build-rootfs.sh)
#
# --root IMG attaches a throwaway raw copy of IMG (sparse; IMG itself is never
# written) as a virtio-blk disk (virtio-mmio, /dev/vda) and adds
# `starina.root=/dev/vda`: the agent switches root into it. Raw, as the
# Starina VMM's disk is, so that this stays the "direct" side of a benchmark.
#
# Machine: what the Starina VMM will offer. One vCPU, `nolapic` (8259 PIC +
# 8254 PIT), the 8250 UART at 0x3f8 as console, virtio-mmio devices announced
# on the command line (QEMU adds `virtio_mmio.device=`), no ACPI, no PCI.
# QEMU_EXTRA adds QEMU arguments; CMDLINE_EXTRA adds kernel arguments;
# KERNEL and INITRD override the built images.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KERNEL="${KERNEL:-$("$HERE/build-kernel.sh")}"
INITRD="${INITRD:-$("$HERE/build-initramfs.sh")}"
RUN_DIR="$(mktemp -d /tmp/starina-direct.XXXXXX)"
trap 'rm -rf "$RUN_DIR"' EXIT
SOCK="$RUN_DIR/control.sock"

# --root IMG is ours; every other argument goes to `scripts/starina direct`.
ROOT_IMAGE=
DIRECT_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root)
            [ $# -ge 2 ] || { echo "run-direct: --root wants an image (linux-guest/build-rootfs.sh prints one)" >&2; exit 2; }
            ROOT_IMAGE="$2"
            shift 2
            ;;
        *)
            DIRECT_ARGS+=("$1")
            shift
            ;;
    esac
done
ROOT_ARGS=()
if [ -n "$ROOT_IMAGE" ]; then
    [ -f "$ROOT_IMAGE" ] || { echo "run-direct: no root image at $ROOT_IMAGE" >&2; exit 2; }
    cp --sparse=always --reflink=auto "$ROOT_IMAGE" "$RUN_DIR/root.ext4"
    ROOT_ARGS=(-drive "file=$RUN_DIR/root.ext4,format=raw,if=none,id=root"
        -device virtio-blk-device,drive=root)
    CMDLINE_EXTRA="${CMDLINE_EXTRA:-} starina.root=/dev/vda"
fi

# Fast boot flags after Firecracker; `quiet` keeps the slow serial console idle.
CMDLINE="console=ttyS0 quiet nolapic reboot=k panic=1 pci=off nomodule"
CMDLINE+=" i8042.noaux i8042.nomux i8042.dumbkbd i8042.nopnp cryptomgr.notests"
CMDLINE+=" ${CMDLINE_EXTRA:-}"

# shellcheck disable=SC2086 # QEMU_EXTRA is a list of words on purpose.
"$HERE/../scripts/starina" direct --socket "$SOCK" ${DIRECT_ARGS[@]+"${DIRECT_ARGS[@]}"} -- \
    qemu-system-x86_64 \
    -M microvm,acpi=off,pic=on,pit=on,ioapic2=off,isa-serial=on \
    -cpu max,-apic,-x2apic -smp 1 -m 256M \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
    -device virtio-serial-device \
    -chardev socket,id=control,path="$SOCK" \
    -device virtconsole,chardev=control \
    -device i8042 \
    ${ROOT_ARGS[@]+"${ROOT_ARGS[@]}"} \
    ${QEMU_EXTRA:-}
