#!/usr/bin/env python3
"""Host-side test client for the Starina guest agent, over a QEMU chardev.

Listens on a unix socket, starts QEMU (the command after `--`, whose
virtconsole chardev must connect to that socket), waits for the agent's Ready
frame, runs commands over the process protocol and prints what they did.

    host-client.py --socket S.sock [--selftest] [--run 'uname -a'] -- qemu-system-x86_64 ...

The protocol is the one in bridge/src/process.rs; this is an independent
implementation of it, kept small on purpose.
"""

import argparse
import os
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time

# Frame types (bridge/src/process.rs).
SPAWN, STDIN, STDIN_CLOSE, KILL, PING, PANIC = 0x01, 0x02, 0x03, 0x04, 0x05, 0x0F
READY, STARTED, STDOUT, STDERR, EXITED, SIGNALED, SPAWN_FAILED, PONG = range(0x81, 0x89)
PANIC_MAGIC = 0x50414E43
READY_LINE = b"starina-agent: ready"


def frame(ftype, fid, payload=b""):
    return struct.pack("<IBI", 5 + len(payload), ftype, fid) + payload


def blob(b):
    return struct.pack("<I", len(b)) + b


def spawn_frame(fid, argv, env=(), cwd=None):
    p = struct.pack("<I", len(argv)) + b"".join(blob(a.encode()) for a in argv)
    p += struct.pack("<I", len(env))
    p += b"".join(blob(k.encode()) + blob(v.encode()) for k, v in env)
    p += b"\x00" if cwd is None else b"\x01" + blob(cwd.encode())
    return frame(SPAWN, fid, p)


class Outcome:
    def __init__(self):
        self.pid = None
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exited = None
        self.signaled = None
        self.failed = None

    def done(self):
        return self.exited is not None or self.signaled is not None or self.failed is not None

    def status(self):
        if self.exited is not None:
            return f"exit status {self.exited}"
        if self.signaled is not None:
            return f"killed by signal {self.signaled}"
        return f"spawn failed: errno {self.failed[0]}: {self.failed[1]}"


class Client:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""
        self.ready = None
        self.outcomes = {}
        self.pongs = set()

    def send(self, data):
        self.conn.sendall(data)

    def pump(self, deadline):
        """Reads and dispatches frames until `deadline`; False on timeout/EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.conn.settimeout(left)
        try:
            data = self.conn.recv(65536)
        except socket.timeout:
            return False
        if not data:
            raise ConnectionError("control socket closed")
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from("<I", self.buf)
            if n < 5 or n > (1 << 20):
                raise ValueError(f"bad frame length {n}")
            if len(self.buf) < 4 + n:
                break
            body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
            self.dispatch(body[0], struct.unpack_from("<I", body, 1)[0], body[5:])
        return True

    def dispatch(self, ftype, fid, p):
        if ftype == READY:
            (n,) = struct.unpack_from("<I", p)
            self.ready = p[4 : 4 + n].decode()
            return
        if ftype == PONG:
            self.pongs.add(fid)
            return
        o = self.outcomes.setdefault(fid, Outcome())
        if ftype == STARTED:
            (o.pid,) = struct.unpack("<I", p)
        elif ftype == STDOUT:
            o.stdout += p
        elif ftype == STDERR:
            o.stderr += p
        elif ftype == EXITED:
            (o.exited,) = struct.unpack("<i", p)
        elif ftype == SIGNALED:
            (o.signaled,) = struct.unpack("<i", p)
        elif ftype == SPAWN_FAILED:
            errno, n = struct.unpack_from("<iI", p)
            o.failed = (errno, p[8 : 8 + n].decode())
        else:
            raise ValueError(f"unexpected frame type {ftype:#x}")

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            if not self.pump(deadline):
                raise TimeoutError(f"timed out waiting for {what}")

    def run(self, fid, argv, timeout=60, **kw):
        self.outcomes[fid] = Outcome()
        self.send(spawn_frame(fid, argv, **kw))
        self.wait(lambda: self.outcomes[fid].done(), timeout, f"{argv}")
        return self.outcomes.pop(fid)


def check(cond, what):
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        raise AssertionError(what)


def selftest(c, qemu):
    print("selftest:")
    c.send(frame(PING, 7))
    c.wait(lambda: 7 in c.pongs, 30, "pong")
    check(True, "ping -> pong")

    o = c.run(1, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    check((o.stdout, o.stderr, o.exited) == (b"out\n", b"err\n", 3), "separate stdout/stderr, exit 3")

    o = c.run(2, ["no-such-command"])
    check(o.exited == 127 and b"not found" in o.stderr, "missing command -> 127 + message on stderr")

    c.outcomes[3] = Outcome()
    c.send(spawn_frame(3, ["cat"]) + frame(STDIN, 3, b"via stdin\n") + frame(STDIN_CLOSE, 3))
    c.wait(lambda: c.outcomes[3].done(), 60, "cat")
    o = c.outcomes.pop(3)
    check(o.stdout == b"via stdin\n" and o.exited == 0, "stdin streamed to cat, closed")

    o = c.run(4, ["sh", "-c", "pwd; echo $X"], env=[("X", "from-env")], cwd="/tmp")
    check(o.stdout == b"/tmp\nfrom-env\n", "env and cwd")

    c.outcomes[5] = Outcome()
    c.send(spawn_frame(5, ["sleep", "1000"]))
    c.wait(lambda: c.outcomes[5].pid, 60, "sleep to start")
    c.send(frame(KILL, 5, struct.pack("<i", 9)))
    c.wait(lambda: c.outcomes[5].done(), 60, "sleep to die")
    check(c.outcomes.pop(5).signaled == 9, "kill -> signaled 9")

    ids = range(100, 125)
    t0 = time.monotonic()
    for i in ids:
        c.outcomes[i] = Outcome()
        c.send(spawn_frame(i, ["sh", "-c", "sleep 1; echo $N", "x"], env=[("N", str(i))]))
    c.wait(lambda: all(c.outcomes[i].done() for i in ids), 120, "25 processes")
    good = all(c.outcomes[i].stdout == f"{i}\n".encode() and c.outcomes[i].exited == 0 for i in ids)
    check(good, f"25 concurrent processes ({time.monotonic() - t0:.2f} s wall, each sleeps 1 s)")

    # Orphans: the shell exits at once, its background sleeps are re-parented
    # to PID 1 (the agent), which must reap them.
    o = c.run(6, ["sh", "-c", "for i in 1 2 3 4 5; do sleep 0.2 & done; exit 0"])
    o = c.run(7, ["sh", "-c", "sleep 0.5; ps -o stat,comm | grep -c '^ *Z' || true"])
    check(o.stdout.strip() == b"0", f"orphans reaped by PID 1 (zombies: {o.stdout.strip().decode()})")

    o = c.run(8, ["sh", "-c", "seq 1 100000 | md5sum"])
    exp = subprocess.run("seq 1 100000 | md5sum", shell=True, capture_output=True).stdout
    check(o.stdout == exp, "100000 lines of output intact (md5)")

    t0 = time.monotonic()
    c.send(frame(PANIC, 0, struct.pack("<I", PANIC_MAGIC)))
    try:
        qemu.wait(timeout=60)
        check(True, f"panic request: guest panicked, QEMU exited ({time.monotonic() - t0:.2f} s)")
    except subprocess.TimeoutExpired:
        check(False, "panic request: QEMU did not exit within 60 s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="unix socket the VM's virtconsole chardev connects to")
    ap.add_argument("--run", action="append", default=[], help="command to run (shell-split); repeatable")
    ap.add_argument("--selftest", action="store_true", help="run the protocol self test, ending with a guest panic")
    ap.add_argument("--serial-log", help="write the VM's serial console here instead of stderr")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for the agent")
    ap.add_argument("qemu", nargs=argparse.REMAINDER, help="-- the QEMU command line")
    args = ap.parse_args()
    qemu_cmd = args.qemu[1:] if args.qemu[:1] == ["--"] else args.qemu
    if not qemu_cmd:
        ap.error("missing QEMU command after --")

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(1)

    serial = open(args.serial_log, "wb") if args.serial_log else sys.stderr.buffer
    ready_line_at = []
    t0 = time.monotonic()
    qemu = subprocess.Popen(qemu_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def copy_serial():
        for line in iter(qemu.stdout.readline, b""):
            if READY_LINE in line and not ready_line_at:
                ready_line_at.append(time.monotonic() - t0)
            serial.write(line)
            serial.flush()

    threading.Thread(target=copy_serial, daemon=True).start()
    status = 1
    try:
        listener.settimeout(args.timeout)
        conn, _ = listener.accept()
        c = Client(conn)
        c.wait(lambda: c.ready is not None, args.timeout, "the agent's Ready frame")
        ready_at = time.monotonic() - t0
        time.sleep(0.05)  # let the console line through, for the report
        print(f"agent ready: Linux {c.ready}")
        line = f", console line at {ready_line_at[0]:.3f} s" if ready_line_at else ""
        print(f"boot time: QEMU start -> Ready frame {ready_at:.3f} s{line}")
        for i, command in enumerate(args.run or ([] if args.selftest else ["uname -a"])):
            t1 = time.monotonic()
            o = c.run(1000 + i, shlex.split(command))
            print(f"$ {command}")
            sys.stdout.write(o.stdout.decode(errors="replace"))
            sys.stdout.write(o.stderr.decode(errors="replace"))
            print(f"[{o.status()}, {1000 * (time.monotonic() - t1):.1f} ms round trip]")
        if args.selftest:
            selftest(c, qemu)
        status = 0
    except (AssertionError, TimeoutError, ConnectionError, ValueError, OSError) as e:
        print(f"host-client: error: {e}", file=sys.stderr)
    finally:
        if qemu.poll() is None:
            qemu.terminate()
            try:
                qemu.wait(timeout=10)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
        listener.close()
        os.unlink(args.socket)
    return status


if __name__ == "__main__":
    sys.exit(main())
