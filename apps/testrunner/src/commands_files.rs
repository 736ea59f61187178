//! The file and text commands of `coreutils` on the test disk, run as a
//! shell would run them: arguments, `PWD`, stdin, pipes between them, and
//! what they print and return.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use starina::channel::Channel;
use starina::command::Input;
use starina::command::Job;
use starina::command::Output;
use starina::command::Request;
use starina::command::Stdio;
use starina::fs::OpenOptions;

use crate::Ctx;
use crate::TestResult;

/// What a command did: its status, stdout and stderr.
struct Ran {
    status: i32,
    out: String,
    err: String,
}

fn text(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "output is not UTF-8".to_string())
}

/// Writes `data` then the end of the stream, from a thread of its own (so
/// a command can write its output while it still reads).
fn feed(channel: Channel, data: Vec<u8>) -> Result<(), String> {
    starina::thread::spawn(move || {
        let mut stdin = Output::new(channel);
        if stdin.write(&data).and_then(|()| stdin.close()).is_err() {
            log::debug!("commands_files: a command stopped reading its stdin");
        }
    })
    .map_err(|e| format!("thread: {e}"))
}

/// Runs `name args...` in the directory `pwd` with `stdin`.
fn run_in(cx: &Ctx, pwd: &str, name: &str, args: &[&str], stdin: &[u8]) -> Result<Ran, String> {
    let mut request = Request::new(name, args);
    request.vars.push(("PWD".to_string(), pwd.to_string()));
    let (stdio, peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let job = cx
        .spawn
        .spawn_request(&request, stdio)
        .map_err(|e| format!("spawn {name}: {e}"))?;
    feed(peer.stdin, stdin.to_vec())?;
    let out = Input::new(peer.stdout).read_to_end(4 << 20);
    let err = Input::new(peer.stderr).read_to_end(1 << 20);
    let status = job.wait().map_err(|e| e.to_string())?;
    Ok(Ran {
        status,
        out: text(out.map_err(|e| format!("{name}'s stdout: {e}"))?)?,
        err: text(err.map_err(|e| format!("{name}'s stderr: {e}"))?)?,
    })
}

fn run(cx: &Ctx, name: &str, args: &[&str]) -> Result<Ran, String> {
    run_in(cx, "/", name, args, b"")
}

/// Runs `argv` (name first) and checks status 0 and stdout `want`.
fn expect(cx: &Ctx, argv: &[&str], want: &str) -> TestResult {
    let r = run(cx, argv[0], &argv[1..])?;
    check!(
        r.status == 0 && r.out == want,
        "{argv:?}: status {}, stdout {:?} (wanted {want:?}), stderr {:?}",
        r.status,
        r.out,
        r.err
    );
    Ok(())
}

/// A pipeline: each command's stdout is the next one's stdin; the first
/// reads `stdin`. The statuses and the last one's stdout.
fn pipeline(cx: &Ctx, commands: &[&[&str]], stdin: &[u8]) -> Result<(Vec<i32>, String), String> {
    let (mut jobs, mut stderrs) = (Vec::new(), Vec::new());
    let (first_w, first_r) = Channel::create().map_err(|e| e.to_string())?;
    feed(first_w, stdin.to_vec())?;
    let mut next_in = first_r;
    for argv in commands {
        let (stdio, peer) = Stdio::pipes().map_err(|e| e.to_string())?;
        let (out_w, out_r) = Channel::create().map_err(|e| e.to_string())?;
        let stdio = Stdio {
            stdin: next_in,
            stdout: out_w,
            ..stdio
        };
        let request = Request::new(argv[0], &argv[1..]);
        let job = cx
            .spawn
            .spawn_request(&request, stdio)
            .map_err(|e| format!("spawn {argv:?}: {e}"))?;
        jobs.push(job);
        stderrs.push(peer.stderr);
        next_in = out_r;
    }
    let out = Input::new(next_in)
        .read_to_end(4 << 20)
        .map_err(|e| e.to_string())?;
    let statuses = jobs
        .iter()
        .map(|j: &Job| j.wait().map_err(|e| e.to_string()))
        .collect::<Result<Vec<i32>, String>>()?;
    Ok((statuses, text(out)?))
}

/// Writes the stdout of `echo args...` into the file `path`, as a shell's
/// `echo ... > path` would.
fn echo_into(cx: &mut Ctx, args: &[&str], path: &str) -> TestResult {
    let (stdio, peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let job = cx
        .spawn
        .spawn_request(&Request::new("echo", args), stdio)
        .map_err(|e| format!("spawn echo: {e}"))?;
    let files = cx.files.as_mut().ok_or("no fs client")?;
    let options = OpenOptions::write().create().truncate().clone();
    let mut file = files
        .open(path, &options)
        .map_err(|e| format!("open {path}: {e}"))?;
    let mut input = Input::new(peer.stdout);
    let mut offset = 0;
    while let Some(chunk) = input.read_chunk().map_err(|e| e.to_string())? {
        file.write_all_at(offset, chunk)
            .map_err(|e| format!("write {path}: {e}"))?;
        offset += chunk.len() as u64;
    }
    check!(job.wait() == Ok(0), "echo's status: {:?}", job.status());
    Ok(())
}

fn write_file(cx: &mut Ctx, path: &str, data: &[u8]) -> TestResult {
    let files = cx.files.as_mut().ok_or("no fs client")?;
    files
        .write(path, data)
        .map_err(|e| format!("write {path}: {e}"))
}

pub fn commands_files_mkdir_echo_cat(cx: &mut Ctx) -> TestResult {
    expect(cx, &["mkdir", "-p", "/cf/a/b/c"], "")?;
    expect(cx, &["mkdir", "-p", "/cf/a/b"], "")?;
    let r = run(cx, "mkdir", &["/cf/a"])?;
    check!(
        r.status == 1 && r.err == "mkdir: /cf/a: file exists\n",
        "mkdir of an existing directory: {} {:?}",
        r.status,
        r.err
    );
    echo_into(cx, &["hello", "files"], "/cf/a/b/hello.txt")?;
    expect(cx, &["cat", "/cf/a/b/hello.txt"], "hello files\n")?;
    // Relative to PWD, `-` for stdin among the files.
    let r = run_in(
        cx,
        "/cf/a",
        "cat",
        &["b/hello.txt", "-", "./b/../b/hello.txt"],
        b"middle\n",
    )?;
    check!(
        r.status == 0 && r.out == "hello files\nmiddle\nhello files\n",
        "cat in /cf/a: {:?} {:?}",
        r.out,
        r.err
    );
    Ok(())
}

pub fn commands_files_cp_mv_rm_stat(cx: &mut Ctx) -> TestResult {
    expect(cx, &["mkdir", "-p", "/cp/src/sub"], "")?;
    let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    write_file(cx, "/cp/src/big.bin", &big)?;
    write_file(cx, "/cp/src/sub/note.txt", b"note\n")?;
    expect(cx, &["cp", "/cp/src/big.bin", "/cp/copy.bin"], "")?;
    let files = cx.files.as_mut().ok_or("no fs client")?;
    let back = files.read("/cp/copy.bin").map_err(|e| e.to_string())?;
    check!(
        back == big,
        "cp copied {} bytes, not the same 100000",
        back.len()
    );
    let r = run(cx, "cp", &["/cp/src", "/cp/dst"])?;
    check!(
        r.status == 1 && r.err.contains("is a directory"),
        "cp of a directory without -r: {:?}",
        r.err
    );
    expect(cx, &["cp", "-r", "/cp/src", "/cp/dst"], "")?;
    expect(cx, &["cat", "/cp/dst/sub/note.txt"], "note\n")?;
    let r = run(cx, "cp", &["-r", "/cp/src", "/cp/src/sub"])?;
    check!(
        r.status == 1 && r.err.contains("into itself"),
        "cp into itself: {:?}",
        r.err
    );
    expect(cx, &["mv", "/cp/copy.bin", "/cp/dst/sub"], "")?;
    let r = run(cx, "stat", &["/cp/dst/sub/copy.bin"])?;
    check!(
        r.status == 0
            && r.out.contains("Size: 100000")
            && r.out.contains("regular file")
            && r.out.contains("(-rw-r--r--)"),
        "stat: {:?}",
        r.out
    );
    let r = run(cx, "stat", &["/cp/copy.bin"])?;
    check!(
        r.status == 1 && r.err == "stat: /cp/copy.bin: no such file or directory\n",
        "stat after mv: {:?}",
        r.err
    );
    let r = run(cx, "rm", &["/cp/dst"])?;
    check!(
        r.status == 1 && r.err.contains("is a directory"),
        "rm of a directory without -r: {:?}",
        r.err
    );
    expect(cx, &["rm", "-r", "/cp/dst", "/cp/src/big.bin"], "")?;
    expect(cx, &["rm", "-f", "/cp/dst", "/cp/never-was"], "")?;
    expect(cx, &["ls", "/cp"], "src\n")?;
    expect(cx, &["ls", "/cp/src"], "sub\n")
}

pub fn commands_files_ls(cx: &mut Ctx) -> TestResult {
    expect(cx, &["mkdir", "/ls", "/ls/dir"], "")?;
    for name in ["c.txt", "a.txt", ".hidden", "B"] {
        write_file(cx, &format!("/ls/{name}"), b"12345")?;
    }
    expect(cx, &["ls", "/ls"], "B\na.txt\nc.txt\ndir\n")?;
    expect(
        cx,
        &["ls", "-a", "/ls"],
        ".\n..\n.hidden\nB\na.txt\nc.txt\ndir\n",
    )?;
    let r = run_in(cx, "/ls", "ls", &["-l"], b"")?;
    let lines: Vec<&str> = r.out.lines().collect();
    check!(
        r.status == 0 && lines.len() == 4,
        "ls -l: {:?} {:?}",
        r.out,
        r.err
    );
    check!(
        lines[0] == "-rw-r--r--    5 B",
        "ls -l's first line: {:?}",
        lines[0]
    );
    check!(
        lines[3].starts_with("drwxr-xr-x ") && lines[3].ends_with(" dir"),
        "ls -l's dir: {:?}",
        lines[3]
    );
    expect(cx, &["ls", "/ls/a.txt"], "/ls/a.txt\n")?;
    expect(
        cx,
        &["ls", "/ls/dir", "/ls", "/ls/a.txt"],
        "/ls/a.txt\n\n/ls:\nB\na.txt\nc.txt\ndir\n\n/ls/dir:\n",
    )?;
    let r = run(cx, "ls", &["/ls/none"])?;
    check!(
        r.status == 1 && r.err == "ls: /ls/none: no such file or directory\n",
        "ls of nothing: {:?}",
        r.err
    );
    Ok(())
}

pub fn commands_files_grep(cx: &mut Ctx) -> TestResult {
    expect(cx, &["mkdir", "/grep"], "")?;
    write_file(
        cx,
        "/grep/t.txt",
        b"alpha 1\nbeta 22\nBeta x\ngamma 333\nbetabeta 4",
    )?;
    let f = "/grep/t.txt";
    expect(cx, &["grep", "^b.*[0-9]+$", f], "beta 22\nbetabeta 4\n")?;
    expect(cx, &["grep", "-c", "a [0-9]", f], "4\n")?;
    expect(cx, &["grep", "-v", "-i", "beta", f], "alpha 1\ngamma 333\n")?;
    expect(cx, &["grep", "-n", "-F", "a 3", f], "4:gamma 333\n")?;
    let r = run(cx, "grep", &["-q", "-i", "ALPHA", f])?;
    check!(
        r.status == 0 && r.out.is_empty(),
        "grep -q -i: {} {:?}",
        r.status,
        r.out
    );
    expect(cx, &["echo", "a", "--help"], "a --help\n")?;
    let r = run(cx, "grep", &["nothing-like-this", f])?;
    check!(
        r.status == 1 && r.out.is_empty(),
        "grep without a match: {}",
        r.status
    );
    let r = run(cx, "grep", &["[abc", f])?;
    check!(
        r.status == 2 && r.err.contains("unmatched ["),
        "a bad pattern: {} {:?}",
        r.status,
        r.err
    );
    let r = run_in(cx, "/", "grep", &["-c", "o"], b"one\ntwo\nthree\n")?;
    check!(
        r.status == 0 && r.out == "2\n",
        "grep -c on stdin: {:?}",
        r.out
    );
    Ok(())
}

pub fn commands_files_head_tail_wc_seq(cx: &mut Ctx) -> TestResult {
    let (statuses, out) = pipeline(cx, &[&["seq", "1", "1000"], &["wc", "-l"]], b"")?;
    check!(
        statuses == [0, 0] && out == "1000\n",
        "seq 1 1000 | wc -l: {statuses:?} {out:?}"
    );
    let (statuses, out) = pipeline(cx, &[&["echo", "hello"], &["wc", "-c"]], b"")?;
    check!(
        statuses == [0, 0] && out == "6\n",
        "echo hello | wc -c: {out:?}"
    );
    let (_, out) = pipeline(cx, &[&["seq", "100"], &["tail", "-n", "3"]], b"")?;
    check!(out == "98\n99\n100\n", "seq 100 | tail -n 3: {out:?}");
    let (_, out) = pipeline(cx, &[&["seq", "5"], &["tail", "-n", "+4"]], b"")?;
    check!(out == "4\n5\n", "tail -n +4: {out:?}");
    expect(cx, &["mkdir", "/htw"], "")?;
    write_file(cx, "/htw/t.txt", b"one two\nthree\nfour five six\n")?;
    expect(cx, &["head", "-n", "2", "/htw/t.txt"], "one two\nthree\n")?;
    expect(cx, &["head", "-1", "/htw/t.txt"], "one two\n")?;
    expect(cx, &["tail", "-n", "1", "/htw/t.txt"], "four five six\n")?;
    expect(cx, &["wc", "/htw/t.txt"], " 3  6 28 /htw/t.txt\n")?;
    let r = run_in(cx, "/htw", "wc", &["-w", "t.txt", "-"], b"a b\n")?;
    check!(
        r.out == "      6 t.txt\n      2 -\n      8 total\n",
        "wc of a file and stdin: {:?}",
        r.out
    );
    expect(cx, &["seq", "3", "-1", "1"], "3\n2\n1\n")?;
    // head stops early; seq then finds its reader gone (status 141).
    let (statuses, out) = pipeline(cx, &[&["seq", "1000000"], &["head", "-n", "2"]], b"")?;
    check!(
        out == "1\n2\n" && statuses == [141, 0],
        "seq | head: {statuses:?} {out:?}"
    );
    Ok(())
}

pub fn commands_files_long_lines(cx: &mut Ctx) -> TestResult {
    let mut line = vec![b'x'; 1_000_000];
    line.extend_from_slice(b"needle\nshort\n");
    let r = run_in(cx, "/", "wc", &[], &line)?;
    check!(
        r.out == "      2       2 1000013\n",
        "wc of a million-byte line: {:?}",
        r.out
    );
    let r = run_in(cx, "/", "grep", &["-c", "x*needle$"], &line)?;
    check!(
        r.status == 0 && r.out == "1\n",
        "grep on a million-byte line: {:?} {:?}",
        r.out,
        r.err
    );
    // A pattern a backtracking matcher takes forever on: one pass here.
    let r = run_in(cx, "/", "grep", &["-c", "x*x*x*x*x*x*x*x*y"], &line)?;
    check!(
        r.status == 1 && r.out == "0\n",
        "a hostile pattern: {} {:?}",
        r.status,
        r.out
    );
    let r = run_in(cx, "/", "head", &["-n", "1"], &line)?;
    check!(
        r.out.len() == 1_000_007,
        "head -n 1 gave {} bytes",
        r.out.len()
    );
    let r = run_in(cx, "/", "cat", &[], &line)?;
    check!(
        r.out.as_bytes() == &line[..],
        "cat gave {} bytes",
        r.out.len()
    );
    Ok(())
}

pub fn commands_files_errors_and_help(cx: &mut Ctx) -> TestResult {
    let r = run(cx, "cat", &["/no/such/file"])?;
    check!(
        r.status == 1 && r.err == "cat: /no/such/file: no such file or directory\n",
        "cat of nothing: {} {:?}",
        r.status,
        r.err
    );
    let r = run(cx, "cat", &["/"])?;
    check!(
        r.status == 1 && r.err == "cat: /: is a directory\n",
        "cat of a directory: {:?}",
        r.err
    );
    let r = run(cx, "ls", &["-z"])?;
    check!(
        r.status == 2 && r.err == "ls: unknown option -z\n",
        "a bad option: {} {:?}",
        r.status,
        r.err
    );
    let r = run(cx, "head", &["-n", "many"])?;
    check!(
        r.status == 2 && r.err.contains("invalid number of lines"),
        "head -n many: {:?}",
        r.err
    );
    let r = run(cx, "cp", &["/only-one"])?;
    check!(r.status == 2, "cp with one operand: {}", r.status);
    let names = [
        "ls", "cat", "echo", "wc", "grep", "head", "tail", "cp", "mv", "rm", "mkdir", "stat",
        "true", "false", "seq",
    ];
    for name in names {
        let r = run(cx, name, &["--help"])?;
        check!(
            r.status == 0
                && r.out.starts_with(&format!("usage: {name}"))
                && r.out.lines().count() >= 2,
            "{name} --help: {} {:?}",
            r.status,
            r.out
        );
    }
    Ok(())
}
