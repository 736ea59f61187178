//! A Linux service declared in a spec (`specs/linux_web.toml`, `kind =
//! "linux"`), end to end: the `linux_services` profile (the `linux`
//! profile plus `linux_web`) through `exec`. Boots Starina and Linux under
//! QEMU: slow, run by `make test`.
//!
//! Startup runs the service's program in Linux as the spec says (user,
//! working directory, environment), its port answers from the host (a
//! port the profile would not forward, but the spec declares), the
//! native httpd lists it as a component of kind `linux`, its output is in
//! Starina's log under its name, and when it is killed startup starts it
//! again and it answers again.

use std::io::Write;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_tests::*;

/// The port `linux_web`'s spec declares (and the host tool forwards).
const PORT: u16 = 8000;
/// What its page says (linux-guest/www/index.html).
const PAGE: &str = "Hello from Linux inside Starina";

/// `GET path` on the host's `127.0.0.1:port`: the body of a 200 answer.
fn get(port: u16, path: &str) -> Result<String, String> {
    http::get(port, path).map(|body| String::from_utf8_lossy(&body).into_owned())
}

/// Polls `GET path` until `ok` accepts a body, for at most `limit`.
fn wait_get(
    port: u16,
    path: &str,
    limit: Duration,
    ok: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match get(port, path) {
            Ok(body) if ok(&body) => return Ok(body),
            Ok(body) => last = format!("unexpected body {body:?}"),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!("GET {path} on port {port} for {limit:?}: {last}"))
}

/// Ends the test: closes the script's input, waits for `exec`, and fails
/// with `why` and what it printed.
fn stop(writer: std::io::PipeWriter, run: Run, why: String) -> ! {
    drop(writer);
    let (code, out, err) = run.join().unwrap();
    panic!("{why} (exec exit {code}):\n--- stdout:\n{out}\n--- console:\n{err}");
}

type Run = thread::JoinHandle<(i32, String, String)>;

fn stop_now(components: &str) -> &str {
    panic!("/api/components does not list linux_web: {components}")
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn a_linux_service_from_a_spec_runs_answers_and_is_restarted() {
    // The service's process is the one whose whole command line is the
    // spec's `command` (this guest's busybox has no pgrep).
    let script = r#"
svc_pid() {
    for d in /proc/[0-9]*; do
        [ "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" = "busybox httpd -f -vv -p 8000 -h /srv/www " ] && echo ${d#/proc/}
    done
    return 0
}
i=0; until pid1=$(svc_pid) && [ -n "$pid1" ] || [ $i -ge 200 ]; do sleep 0.2; i=$((i+1)); done
echo "pid1=$pid1"
echo "user=$(stat -c %U /proc/$pid1)"
echo "cwd=$(readlink /proc/$pid1/cwd)"
echo "env=$(tr '\0' '\n' < /proc/$pid1/environ | grep STARINA_SERVICE)"
read line
kill $pid1
i=0; until { pid2=$(svc_pid) && [ -n "$pid2" ] && [ "$pid2" != "$pid1" ]; } || [ $i -ge 100 ]; do sleep 0.2; i=$((i+1)); done
echo "pid2=$pid2"
echo "$pid2" > /srv/www/pid.txt
read line
"#;
    let (reader, mut writer) = std::io::pipe().unwrap();
    let native = http::free_port();
    let run = thread::spawn(move || {
        exec_sh::exec_sh("linux_services", script, Box::new(reader), native, 300.0)
    });

    // The service's port answers from the host once Linux is up.
    let page = match wait_get(PORT, "/", Duration::from_secs(240), |b| b.contains(PAGE)) {
        Ok(page) => page,
        Err(e) => stop(writer, run, e),
    };
    assert!(page.contains("linux_web"), "{page}");
    // The native httpd lists it with the other components.
    let components = match get(native, "/api/components") {
        Ok(json) => json,
        Err(e) => stop(writer, run, format!("/api/components: {e}")),
    };
    let entry = components
        .split("{\"name\":\"linux_web\"")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or_else(|| stop_now(&components));
    assert!(entry.contains("\"kind\":\"linux\""), "{components}");
    assert!(entry.contains("\"state\":\"running\""), "{components}");

    // Kill it from inside Linux; startup starts it again.
    writeln!(writer, "kill").unwrap();
    let again = wait_get(PORT, "/pid.txt", Duration::from_secs(60), |b| {
        !b.trim().is_empty()
    });
    let pid2 = match again {
        Ok(body) => body.trim().to_string(),
        Err(e) => stop(writer, run, format!("after the kill: {e}")),
    };
    match get(PORT, "/") {
        Ok(body) if body.contains(PAGE) => {}
        other => stop(
            writer,
            run,
            format!("the restarted service's page: {other:?}"),
        ),
    }
    writeln!(writer, "done").unwrap();
    drop(writer);
    let (code, out, console) = run.join().unwrap();
    let report = format!("--- stdout:\n{out}\n--- console:\n{console}");
    assert_eq!(code, 0, "{report}");
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= line\n{report}"))
            .trim()
            .to_string()
    };
    let pid1 = value("pid1");
    assert!(
        !pid1.is_empty() && pid1 != pid2,
        "pid1 {pid1:?}, pid2 {pid2:?}\n{report}"
    );
    assert_eq!(value("pid2"), pid2, "{report}");
    // What the spec says: user, working directory, environment.
    assert_eq!(value("user"), "nobody", "{report}");
    assert_eq!(value("cwd"), "/srv/www", "{report}");
    assert_eq!(value("env"), "STARINA_SERVICE=linux_web", "{report}");
    // Its log: tagged with its name, the end and the restart said.
    for line in [
        // The profile forwards from port 9000 up: 8000 is forwarded because
        // the spec declares it (`forward-port:`).
        "net: TCP port 8000 is forwarded (a Linux service declares it)".to_string(),
        format!("linux_web: running as pid {pid1} in Linux"),
        format!("linux_web: running as pid {pid2} in Linux"),
        "linux_web: killed by signal 15".to_string(),
        "linux_web exited with code 143".to_string(),
        "restarting linux_web in".to_string(),
    ] {
        assert!(console.contains(&line), "no {line:?} in the log\n{report}");
    }
}

/// Waits until the console has `count` lines containing `needle`.
fn wait_lines(m: &LinkedGuest, needle: &str, count: usize, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if m.console().lines().filter(|l| l.contains(needle)).count() >= count {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "fewer than {count} lines with {needle:?} after {limit:?}"
    ))
}

/// When Linux itself goes down (a guest kernel panic, asked for through
/// the host link: `allow_test_panic` is on in `linux_services`), startup
/// boots a fresh VM, and the service, whose program went with the old
/// one, runs again in the new one: its runner waits for the new linux
/// server instead of failing, so startup does not restart (or hold down)
/// the service itself.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn a_linux_service_runs_again_after_linux_restarts() {
    let limit = Duration::from_secs(240);
    let mut m = LinkedGuest::boot("linux_services", true, limit);
    let result = (|| -> Result<(), String> {
        wait_lines(&m, "linux_web: running as pid", 1, limit)?;
        m.send(&starina_tests::frames::panic_frame())?;
        wait_lines(&m, "restarting linux in", 1, limit)?;
        wait_lines(&m, "linux_web: running as pid", 2, limit)
    })();
    let console = m.console();
    drop(m);
    if let Err(e) = result {
        panic!("{e}\n--- console:\n{console}");
    }
    for line in console
        .lines()
        .filter(|l| l.contains("linux_web") || l.contains("restarting"))
    {
        println!("{line}");
    }
    assert!(console.contains("linux: [guest] Kernel panic"), "{console}");
    assert!(
        console.contains("linux_web: Linux went down; running again once it is back"),
        "{console}"
    );
    assert!(!console.contains("restarting linux_web"), "{console}");
}
