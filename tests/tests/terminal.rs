//! Interactive terminals (issue 12) end to end: `scripts/starina shell`
//! and `exec -t` driven from a real pseudo-terminal on the host (python3's
//! pty support, `starina_tests::pty`) against one instance on a disk with
//! the Debian root: the prompt, the window size at the start and after a
//! resize, Ctrl-C reaching the foreground job, the exit status, and the
//! host terminal's settings restored on the way out (an exit, a signal,
//! the instance going down). Without a host terminal, `-t` takes `--size`; without `-t`,
//! exec stays on pipes. Slow (boots Starina and Linux): run by `make test`.

use starina_tests::instance::text;
use starina_tests::instance::DebianInstance;
use starina_tests::instance::Tool;
use starina_tests::pty::drive;
use starina_tests::pty::Step::*;

/// Debian's bash prompt for `user` in their home (`user@host:~# `), in
/// colour or not.
fn prompt(user: &str, sign: &str) -> String {
    format!(r"{user}@[^:]*:(\x1b\[[0-9;]*m)*~(\x1b\[[0-9;]*m)*\{sign} ")
}

#[test]
#[ignore = "boots Starina and Linux with the Debian root under QEMU; run by make test"]
fn shells_and_commands_on_a_terminal() {
    let instance = DebianInstance::up();
    let (tool, disk) = (&instance.tool, &instance.disk);

    // root's login shell, in /root.
    let root_prompt = prompt("root", "#");
    let s = drive(
        tool,
        &["shell", "--disk", disk],
        &[
            Expect(&root_prompt, 60),
            Raw("raw"),
            Send("stty size; echo T=$TERM; pwd; shopt -q login_shell && echo LOGIN\n"),
            Expect(r"24 80\r\nT=xterm-256color\r\n/root\r\nLOGIN\r\n", 10),
            Resize(40, 120),
            Sleep(1.0),
            Send("stty size\n"),
            Expect(r"40 120\r\n", 10),
            // Full-screen programs find the terminal's description and size.
            Send("tput cols; tput lines; tput clear | od -An -c | head -1\n"),
            Expect(r"120\r\n40\r\n\s*033\s+\[\s+H", 10),
            // Each key once its command runs (a marker printed just before).
            Send("echo C1; sleep 100\n"),
            Expect(r"C1\r\n", 10),
            Sleep(0.5),
            Mark("ctrl-c"),
            Send("\x03"),
            Expect(&format!(r"\^C[^#]*{root_prompt}"), 10),
            Since("ctrl-c", "interrupted_after"),
            // Ctrl-Z stops the foreground job, Ctrl-\ quits one.
            Send("echo Z1; sleep 100\n"),
            Expect(r"Z1\r\n", 10),
            Sleep(0.5),
            Send("\x1a"),
            Expect(r"Stopped\s+sleep 100", 10),
            Send("kill -9 %1; echo Q1; sleep 101\n"),
            Expect(r"Q1\r\n", 10),
            Sleep(0.5),
            Send("\x1c"),
            Expect(r"Quit", 10),
            // Full-screen programs: less pages, vi edits.
            Send("seq 1 200 | less\n"),
            Expect(r"\r\n39\r\n:", 10),
            Send(" "),
            Expect(r"\r\n78\r\n:", 10),
            Send("q"),
            Expect(&root_prompt, 10),
            Send("vi /tmp/edited\n"),
            Expect(r"/tmp/edited.*\[New", 10),
            Send("ihello from vi\x1b:wq\r"),
            Expect(&root_prompt, 10),
            Send("cat /tmp/edited\n"),
            Expect(r"\rhello from vi\r\n", 10),
            Send("echo al$((1+1))ive\n"),
            Expect(r"al2ive\r\n", 10),
            Send("exit 7\n"),
        ],
    );
    assert_eq!(s.error, None, "{}", s.transcript);
    assert_eq!(s.status, 7, "{}", s.transcript);
    assert_eq!(s.record["raw"], "True", "the host terminal was not raw");
    assert!(s.restored, "the terminal's settings were not restored");
    let secs: f64 = s.record["interrupted_after"].parse().unwrap();
    assert!(secs < 1.5, "Ctrl-C took {secs} s to end sleep");

    // Another user's login shell, in their home; Ctrl-D ends it.
    let s = drive(
        tool,
        &["shell", "--disk", disk, "--user", "starina"],
        &[
            Expect(&prompt("starina", "$"), 60),
            Send("id -un; pwd\n"),
            Expect(r"starina\r\n/home/starina\r\n", 10),
            // Ctrl-D only once bash reads again: typed ahead while the
            // terminal is still canonical, the line discipline turns it
            // into an end of file that readline never sees (as on any
            // Linux terminal).
            Expect(&prompt("starina", "$"), 10),
            Send("\x04"),
        ],
    );
    assert_eq!(
        (s.error.as_deref(), s.status),
        (None, 0),
        "{}",
        s.transcript
    );
    assert!(s.restored);

    // SIGTERM to the CLI ends the session and restores the terminal.
    let s = drive(
        tool,
        &[
            "exec",
            "-t",
            "--disk",
            disk,
            "--",
            "sh",
            "-c",
            "echo S1; sleep 100",
        ],
        &[Expect(r"S1\r\n", 60), Raw("raw"), Signal(15)],
    );
    assert_eq!(s.record["raw"], "True");
    assert_eq!(s.status, 128 + 15, "{}", s.transcript);
    assert!(s.restored, "the terminal's settings were not restored");

    // No host terminal: -t still runs on a guest pty, of --size.
    let out = tool.run(&[
        "exec",
        "-t",
        "--size",
        "33x77",
        "--disk",
        disk,
        "--",
        "sh",
        "-c",
        "stty size; tty; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("33 77\r\n/dev/pts/"), "{stdout}");
    // Without -t, pipes as before.
    let out = tool.exec(disk, &["sh", "-c", "tty; stty size"]);
    assert_eq!(text(&out.stdout), "not a tty\n");
    assert_ne!(out.status.code(), Some(0));

    // The instance going down ends a shell and restores the terminal.
    let downer = Tool::clone(tool);
    let down = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(8));
        downer.run(&["down"])
    });
    let s = drive(
        tool,
        &["shell", "--disk", disk],
        &[Expect(&root_prompt, 60), Raw("raw"), Sleep(20.0)],
    );
    assert_eq!(down.join().unwrap().status.code(), Some(0));
    assert_eq!(s.record["raw"], "True");
    assert_eq!(s.status, 125, "{}", s.transcript);
    assert!(s.transcript.contains("went down"), "{}", s.transcript);
    assert!(s.restored, "the terminal's settings were not restored");
}
