"""HTTP figures for `scripts/bench`: Starina's httpd against busybox httpd
in a Linux booted directly by the same QEMU (`-M microvm`, the same
virtio-net NIC on QEMU's user network, the same host port forward to the
guest's port 80).

- Linux: the microVM kernel linux-guest/build-kernel.sh builds (cached; it
  has virtio-net, virtio-mmio and packet sockets) and an initramfs made
  here from Debian's busybox-static, whose /init brings eth0 up with
  udhcpc and runs `busybox httpd` on /www (a 128-byte file and a 1 MiB
  file holding what Starina's /bytes/<n> sends).
- Starina: the `default` profile on microvm.

Load: one client on the host, one request per connection (busybox httpd
closes every connection), one connection at a time (QEMU's user network
accepts forwarded connections with a listen backlog of 1). For each
system: requests/s for the 128-byte body over RPS_SECONDS, and MB/s
(10^6 bytes/s) for the 1 MiB body over MIB_SECONDS.
"""

import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RPS_SECONDS = 10.0
MIB_SECONDS = 10.0
SMALL = 128
BIG = 1 << 20
BOOT_TIMEOUT = 300


def pattern(n):
    return bytes(97 + i % 26 for i in range(n))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- the Linux side ---------------------------------------------------------------

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -n -t 20 -T 1 -s /udhcpc.sh >/dev/null 2>&1 || echo "bench-linux: no DHCP lease"
httpd -p 80 -h /www
echo "bench-linux: ready $(ip -4 -o addr show eth0)"
exec sleep 1000000
"""

UDHCPC = """#!/bin/sh
case "$1" in
bound|renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && route add default gw "$router" dev "$interface"
    ;;
esac
exit 0
"""


def cpio_newc(entries):
    """entries: (name, mode, data, rdev_major, rdev_minor); returns the archive."""
    out = bytearray()
    ino = 1

    def pad4():
        while len(out) % 4:
            out.append(0)

    for name, mode, data, major, minor in entries + [("TRAILER!!!", 0, b"", 0, 0)]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0))
        out += hdr.encode() + nb
        pad4()
        out += data
        pad4()
        ino += 1
    return bytes(out)


def linux_initramfs(path):
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    d, r, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    entries = [
        ("bin", d, b"", 0, 0),
        ("dev", d, b"", 0, 0),
        ("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1),
        ("dev/null", stat.S_IFCHR | 0o666, b"", 1, 3),
        ("bin/busybox", x, busybox, 0, 0),
        ("init", x, INIT.encode(), 0, 0),
        ("udhcpc.sh", x, UDHCPC.encode(), 0, 0),
        ("www", d, b"", 0, 0),
        ("www/small", r, pattern(SMALL), 0, 0),
        ("www/big", r, pattern(BIG), 0, 0),
    ]
    with open(path, "wb") as f:
        f.write(cpio_newc(entries))


def linux_kernel():
    r = subprocess.run([os.path.join(ROOT, "linux-guest", "build-kernel.sh")],
                       stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out = r.stdout.decode().strip().splitlines()
    if r.returncode != 0 or not out or not os.path.isfile(out[-1]):
        return None
    return out[-1]


class Guest:
    """A QEMU whose console we scan for a line."""

    def __init__(self, cmd, env=None):
        self.lines = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def wait_for(self, needle, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(needle in l for l in self.lines):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def boot_linux(port, tmp):
    kernel = linux_kernel()
    if kernel is None:
        print("bench: cannot build the Linux kernel (linux-guest/build-kernel.sh)", file=sys.stderr)
        return None
    initrd = os.path.join(tmp, "initramfs.cpio")
    linux_initramfs(initrd)
    qemu = os.environ.get("STARINA_QEMU", "qemu-system-x86_64")
    cmd = [
        qemu, "-M", "microvm,acpi=off", "-cpu", "max", "-m", "512M", "-display", "none",
        "-monitor", "none", "-no-reboot", "-serial", "stdio",
        "-nic", "none",
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:80" % port,
        "-device", "virtio-net-device,netdev=n0",
        "-kernel", kernel, "-initrd", initrd,
        "-append", "console=ttyS0 quiet panic=-1 reboot=k",
    ]
    g = Guest(cmd)
    if not g.wait_for("bench-linux: ready", BOOT_TIMEOUT):
        print("bench: Linux did not come up; its console:\n" + "\n".join(g.lines[-30:]), file=sys.stderr)
        g.stop()
        return None
    return g


def boot_starina(port, kernel_args):
    env = dict(os.environ, STARINA_HTTP_PORT=str(port))
    cmd = [os.path.join(ROOT, "scripts", "starina"), "run"] + kernel_args + [
        "--profile", "default", "--machine", "microvm", "--timeout", str(BOOT_TIMEOUT + 600)]
    g = Guest(cmd, env)
    if not g.wait_for("httpd: serving HTTP on port 80", BOOT_TIMEOUT):
        print("bench: Starina's httpd did not come up; its console:\n" + "\n".join(g.lines[-30:]),
              file=sys.stderr)
        g.stop()
        return None
    return g


# -- the load ---------------------------------------------------------------------

def fetch(port, path, want_len):
    """One request on a new connection; the body length, checked."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: bench\r\n\r\n" % path.encode())
        chunks = []
        while True:
            d = s.recv(262144)
            if not d:
                break
            chunks.append(d)
    finally:
        s.close()
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0] or len(body) != want_len:
        raise RuntimeError("GET %s: bad answer (%d bytes): %r" % (path, len(data), head[:80]))
    return len(body)


def ready(port, path, want_len, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            fetch(port, path, want_len)
            return True
        except (OSError, RuntimeError):
            time.sleep(0.5)
    return False


def measure(port, small_path, big_path):
    for _ in range(3):  # warm up
        fetch(port, small_path, SMALL)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < RPS_SECONDS:
        fetch(port, small_path, SMALL)
        n += 1
    rps = n / (time.monotonic() - t0)
    fetch(port, big_path, BIG)
    total, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < MIB_SECONDS or total < 3 * BIG:
        total += fetch(port, big_path, BIG)
    mbps = total / (time.monotonic() - t0) / 1e6
    return rps, mbps


def run(kernel_args):
    """Returns {figure: value} (missing figures absent)."""
    figures = {}
    with tempfile.TemporaryDirectory(prefix="starina-bench.") as tmp:
        for system in ("starina", "linux"):
            port = free_port()
            print("==> http: %s on microvm (host port %d)" % (system, port), flush=True)
            g = boot_starina(port, kernel_args) if system == "starina" else boot_linux(port, tmp)
            if g is None:
                continue
            try:
                paths = ("/bytes/%d" % SMALL, "/bytes/%d" % BIG) if system == "starina" else ("/small", "/big")
                if not ready(port, paths[0], SMALL):
                    print("bench: %s never answered HTTP" % system, file=sys.stderr)
                    continue
                rps, mbps = measure(port, *paths)
                print("%s: %.1f requests/s (%d-byte body), %.2f MB/s (1 MiB body)" % (system, rps, SMALL, mbps),
                      flush=True)
                figures["http_rps_" + system] = rps
                figures["http_1mib_mbps_" + system] = mbps
            except (OSError, RuntimeError) as e:
                print("bench: %s: %s" % (system, e), file=sys.stderr)
            finally:
                g.stop()
    out = {}
    for k, v in figures.items():
        out[k] = "%.1f" % v if k.startswith("http_rps") else "%.2f" % v
    if "http_rps_starina" in figures and "http_rps_linux" in figures:
        out["http_rps_ratio"] = "%.3f" % (figures["http_rps_starina"] / figures["http_rps_linux"])
    if "http_1mib_mbps_starina" in figures and "http_1mib_mbps_linux" in figures:
        out["http_1mib_ratio"] = "%.3f" % (figures["http_1mib_mbps_starina"] / figures["http_1mib_mbps_linux"])
    return out


ORDER = [
    "http_rps_starina", "http_rps_linux", "http_rps_ratio",
    "http_1mib_mbps_starina", "http_1mib_mbps_linux", "http_1mib_ratio",
]

if __name__ == "__main__":
    figs = run(["--no-build"])
    for name in ORDER:
        if name in figs:
            print("bench: %s %s" % (name, figs[name]))
    sys.exit(0 if all(n in figs for n in ORDER) else 1)
