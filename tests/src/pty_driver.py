# Drives a command on a real pseudo-terminal, as a person at a terminal
# would: python3 -c SCRIPT STEPS_JSON -- COMMAND ARGS...
#
# The command runs as a session leader with the pty's slave as its
# controlling terminal (so resizes reach it as SIGWINCH). Steps, in order:
#   ["send", text]                 type text (\x03 is Ctrl-C)
#   ["expect", regex, seconds]     wait until the output since the last
#                                  expect matches regex
#   ["resize", rows, cols]         TIOCSWINSZ on the pty (SIGWINCH)
#   ["sleep", seconds]
#   ["mark", name]                 remember the time
#   ["since", name, key]           record seconds since mark `name` as `key`
#   ["raw", key]                   record whether the terminal is raw (no
#                                  ECHO, no ICANON) as `key`
#   ["signal", number]             send a signal to the command
# Prints lines `status N` (exit code, or -signal), `restored yes|no` (the
# terminal's settings after equal those before), `record KEY VALUE` for
# each recorded value, `error TEXT|none` (the step that failed), then
# `transcript` and everything the command wrote.
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

steps = json.loads(sys.argv[1])
command = sys.argv[3:]
master, slave = os.openpty()


def set_size(rows, cols):
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


set_size(24, 80)
before = termios.tcgetattr(slave)


def become_controlling():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


proc = subprocess.Popen(
    command,
    stdin=slave,
    stdout=slave,
    stderr=slave,
    start_new_session=True,
    preexec_fn=become_controlling,
)
transcript = b""
seen_from = 0
record = {}
marks = {}
error = None


def read_some(timeout):
    global transcript
    ready, _, _ = select.select([master], [], [], timeout)
    if not ready:
        return False
    try:
        data = os.read(master, 65536)
    except OSError:
        return False
    transcript += data
    return bool(data)


def expect(pattern, seconds):
    global seen_from
    deadline = time.time() + seconds
    regex = re.compile(pattern.encode())
    while True:
        m = regex.search(transcript, seen_from)
        if m:
            seen_from = m.end()
            return True
        left = deadline - time.time()
        if left <= 0:
            return False
        read_some(min(left, 0.2))


for step in steps:
    kind = step[0]
    if kind == "send":
        os.write(master, step[1].encode())
    elif kind == "expect":
        if not expect(step[1], step[2]):
            error = "timed out waiting for %r" % step[1]
            break
    elif kind == "resize":
        set_size(step[1], step[2])
    elif kind == "sleep":
        end = time.time() + step[1]
        while time.time() < end:
            read_some(max(0.0, min(0.2, end - time.time())))
    elif kind == "mark":
        marks[step[1]] = time.time()
    elif kind == "since":
        record[step[2]] = time.time() - marks[step[1]]
    elif kind == "raw":
        lflag = termios.tcgetattr(slave)[3]
        record[step[1]] = not (lflag & (termios.ECHO | termios.ICANON))
    elif kind == "signal":
        proc.send_signal(step[1])

if error is not None:
    proc.terminate()
deadline = time.time() + (10 if error is not None else 60)
status = None
while status is None and time.time() < deadline:
    read_some(0.2)
    status = proc.poll()
if status is None:
    proc.kill()
    status = proc.wait()
    error = error or "the command did not end"
while read_some(0.1):
    pass
after = termios.tcgetattr(slave)
print("status %d" % status)
print("restored %s" % ("yes" if after == before else "no"))
for key, value in record.items():
    print("record %s %s" % (key, value))
print("error %s" % (error or "none"))
print("transcript")
sys.stdout.write(transcript.decode("utf-8", "replace"))
