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

# Fast boot flags after Firecracker; `quiet` keeps the slow serial console idle.
CMDLINE="console=ttyS0 quiet nolapic reboot=k panic=1 pci=off nomodule"
CMDLINE+=" i8042.noaux i8042.nomux i8042.dumbkbd i8042.nopnp cryptomgr.notests"
CMDLINE+=" ${CMDLINE_EXTRA:-}"

# shellcheck disable=SC2086 # QEMU_EXTRA is a list of words on purpose.
"$HERE/../scripts/starina" direct --socket "$SOCK" "$@" -- \
    qemu-system-x86_64 \
    -M microvm,acpi=off,pic=on,pit=on,ioapic2=off,isa-serial=on \
    -cpu max,-apic,-x2apic -smp 1 -m 256M \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
    -device virtio-serial-device \
    -chardev socket,id=control,path="$SOCK" \
    -device virtconsole,chardev=control \
    -device i8042 \
    ${QEMU_EXTRA:-}
