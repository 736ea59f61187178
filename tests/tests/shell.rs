//! The native shell on the serial console (issue 13), driven from the host
//! through a pseudo-terminal as a person would: `scripts/starina run` boots
//! the default profile (the shell, the native file system on a temporary
//! disk, Linux), and each line typed gets its answer. One boot for all the
//! checks. Run by `make test`.

use std::process::Command;

use starina_host::cp::Copy;
use starina_tests::instance::Tool;
use starina_tests::pty::drive;
use starina_tests::pty::Step::*;
use starina_tests::TempDisk;
use starina_tests::TEST_DISK_SIZE;

/// Ctrl-C's echo, then the prompt on a new line; log lines may come in
/// between (the linux server's periodic reports).
const CTRL_C_THEN_PROMPT: &str = r"\^C\r*\n(\[[^\n]*\n)*/ \$ ";

/// The page the pipeline through Linux hashes: put on the disk as
/// /www/index.html before the boot.
const PAGE: &[u8] = b"<h1>a page for the shell</h1>\nwith two lines\n";

fn disk_with_page() -> TempDisk {
    let disk = TempDisk::new().expect("a temporary directory");
    starina_host::disk::create(&disk.path(), TEST_DISK_SIZE, None).expect("mke2fs");
    let tree = disk.path().with_file_name("www");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("index.html"), PAGE).unwrap();
    let copy = Copy::parse(tree.to_str().unwrap(), "starina:/").unwrap();
    starina_host::cp::copy(&disk.path(), &copy).expect("starina cp of the page");
    disk
}

fn host_sha256(data: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("shell-hash-{}", std::process::id()));
    std::fs::write(&dir, data).unwrap();
    let out = Command::new("sha256sum").arg(&dir).output().expect("sha256sum");
    let _ = std::fs::remove_file(&dir);
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
#[ignore = "boots Starina with Linux under QEMU (make test runs it)"]
fn the_console_shell_runs_native_and_linux_commands() {
    starina_tests::kernel();
    let disk = disk_with_page();
    let runtime = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("shell-{}", std::process::id()));
    let tool = Tool::new(runtime);
    let hash = host_sha256(PAGE);
    let disk_path = disk.path();
    let s = drive(
        &tool,
        &[
            "run",
            "--no-build",
            "--disk",
            disk_path.to_str().unwrap(),
            "--linux-root",
            "none",
            "--timeout",
            "400",
        ],
        &[
            // Linux first, so that the console is quiet while we type.
            Expect(r"linux: guest ready", 240),
            Sleep(1.0),
            Send("echo hello | wc -c\r"),
            Expect(r"\n6\r", 60),
            Expect(r"\$ ", 60),
            Send("ls /\r"),
            Expect(r"\nwww\r", 60),
            Expect(r"\$ ", 60),
            Send("ps | grep shell\r"),
            Expect(r"shell +app +running", 60),
            Expect(r"\$ ", 60),
            Send("false; echo status=$?\r"),
            Expect(r"status=1\r", 60),
            Expect(r"\$ ", 60),
            Send("cat /www/index.html | sha256sum\r"),
            Expect(&format!("{hash}  -"), 60),
            Expect(r"\$ ", 60),
            Send("echo once more\r"),
            Expect(r"\nonce more\r", 60),
            Expect(r"\$ ", 60),
            // Up: the previous line again.
            Send("\x1b[A\r"),
            Expect(r"\nonce more\r", 60),
            Expect(r"\$ ", 60),
            // Tab completes a command name; Ctrl-A goes to the start of the line.
            Send("ech\t"),
            Sleep(0.5),
            Send("tab-done\r"),
            Expect(r"\ntab-done\r", 60),
            Expect(r"\$ ", 60),
            Send("ho start-of-line\x01ec\r"),
            Expect(r"\nstart-of-line\r", 60),
            Expect(r"\$ ", 60),
            Send("cat\r"),
            Sleep(1.0),
            Send("\x03"),
            Expect(CTRL_C_THEN_PROMPT, 10),
            // Ctrl-C of a pipeline through Linux leaves no process behind.
            Send("linux sleep 100 | cat\r"),
            Sleep(2.0),
            Send("\x03"),
            Expect(CTRL_C_THEN_PROMPT, 20),
            // (ps sees itself: the count of `ps` shows it works.)
            Send("linux ps -o comm | grep -c '^sleep$'; linux ps -o comm | grep -c '^ps$'\r"),
            Expect(r"\n0\r*\n([^\n]*\n)*?1\r", 60),
            Expect(r"\$ ", 60),
            Send("crash panic; echo crashed=$?\r"),
            Expect(r"crashed=134\r", 60),
            Expect(r"\$ ", 60),
            Send("echo saved > /note.txt && cat < /note.txt && echo more >> /note.txt; cat /note.txt | linux wc -l\r"),
            Expect(r"saved\r*\n(\[[^\n]*\n)*2\r", 60),
            Expect(r"\$ ", 60),
            Send("cd /www; pwd; cd /nope; echo cd=$?\r"),
            Expect(r"/www\r*\n[^\n]*\n?cd=1", 60),
            Expect(r"\$ ", 60),
            Send("nosuchcommand-xyz; echo missing=$?\r"),
            Expect(r"missing=127", 60),
            Send("\x1dx"),
        ],
    );
    assert_eq!(s.error, None, "{}", s.transcript);
    assert!(s.transcript.contains("crash: panicked"), "{}", s.transcript);
}
