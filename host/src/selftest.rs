//! The process protocol's self test against a real guest agent
//! (`starina direct --selftest`; ends with a guest panic).

use std::process::Child;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::Spawn;

use crate::agent::Agent;
use crate::agent::Outcome;
use crate::direct::panic_guest;

const MINUTE: Duration = Duration::from_secs(60);

fn check(ok: bool, what: &str) -> Result<(), String> {
    println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
    if ok {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

fn with_env(mut spawn: Spawn, env: &[(&str, &str)], cwd: Option<&str>) -> Spawn {
    spawn.env = env
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    spawn.cwd = cwd.map(|c| c.as_bytes().to_vec());
    spawn
}

pub fn selftest(c: &mut Agent, qemu: &mut Child) -> Result<(), String> {
    println!("selftest:");
    c.send(&Frame::Ping { nonce: 7 })?;
    c.wait(|a| a.pongs.contains(&7), Duration::from_secs(30), "pong")?;
    check(true, "ping -> pong")?;

    let o = c.run(
        Spawn::new(1, &["sh", "-c", "echo out; echo err >&2; exit 3"]),
        MINUTE,
    )?;
    let ok = (o.stdout.as_slice(), o.stderr.as_slice(), o.exited) == (b"out\n", b"err\n", Some(3));
    check(ok, "separate stdout/stderr, exit 3")?;

    let o = c.run(Spawn::new(2, &["no-such-command"]), MINUTE)?;
    let ok = o.exited == Some(127) && String::from_utf8_lossy(&o.stderr).contains("not found");
    check(ok, "missing command -> 127 + message on stderr")?;

    c.outcomes.insert(3, Outcome::default());
    c.send(&Frame::Spawn(Spawn::new(3, &["cat"])))?;
    c.send(&Frame::Stdin {
        id: 3,
        data: b"via stdin\n".to_vec(),
    })?;
    c.send(&Frame::StdinClose { id: 3 })?;
    c.wait(|a| a.outcomes[&3].done(), MINUTE, "cat")?;
    let o = c.outcomes.remove(&3).unwrap_or_default();
    check(
        o.stdout == b"via stdin\n" && o.exited == Some(0),
        "stdin streamed to cat, closed",
    )?;

    let spawn = with_env(
        Spawn::new(4, &["sh", "-c", "pwd; echo $X"]),
        &[("X", "from-env")],
        Some("/tmp"),
    );
    let o = c.run(spawn, MINUTE)?;
    check(o.stdout == b"/tmp\nfrom-env\n", "env and cwd")?;
    signals_and_processes(c)?;

    let took = panic_guest(c, qemu)?;
    check(
        true,
        &format!(
            "panic request: guest panicked, QEMU exited ({:.2} s)",
            took.as_secs_f64()
        ),
    )
}

/// Kill, many processes at once, orphans, a large output.
fn signals_and_processes(c: &mut Agent) -> Result<(), String> {
    c.outcomes.insert(5, Outcome::default());
    c.send(&Frame::Spawn(Spawn::new(5, &["sleep", "1000"])))?;
    c.wait(|a| a.outcomes[&5].pid.is_some(), MINUTE, "sleep to start")?;
    c.send(&Frame::Kill { id: 5, signal: 9 })?;
    c.wait(|a| a.outcomes[&5].done(), MINUTE, "sleep to die")?;
    check(
        c.outcomes.remove(&5).and_then(|o| o.signaled) == Some(9),
        "kill -> signaled 9",
    )?;

    concurrent(c)?;

    // Orphans: the shell exits at once, its background sleeps are re-parented
    // to PID 1 (the agent), which must reap them.
    c.run(
        Spawn::new(
            6,
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5; do sleep 0.2 & done; exit 0",
            ],
        ),
        MINUTE,
    )?;
    let o = c.run(
        Spawn::new(
            7,
            &[
                "sh",
                "-c",
                "sleep 0.5; ps -o stat,comm | grep -c '^ *Z' || true",
            ],
        ),
        MINUTE,
    )?;
    let zombies = String::from_utf8_lossy(&o.stdout).trim().to_string();
    check(
        zombies == "0",
        &format!("orphans reaped by PID 1 (zombies: {zombies})"),
    )?;

    let o = c.run(
        Spawn::new(8, &["sh", "-c", "seq 1 100000 | md5sum"]),
        MINUTE,
    )?;
    let host = Command::new("sh")
        .args(["-c", "seq 1 100000 | md5sum"])
        .output()
        .map_err(|e| e.to_string())?;
    check(
        o.stdout == host.stdout,
        "100000 lines of output intact (md5)",
    )?;

    Ok(())
}

/// 25 processes at once, each sleeping 1 s.
fn concurrent(c: &mut Agent) -> Result<(), String> {
    let ids: Vec<u32> = (100..125).collect();
    let t0 = Instant::now();
    for &i in &ids {
        c.outcomes.insert(i, Outcome::default());
        let n = i.to_string();
        let spawn = with_env(
            Spawn::new(i, &["sh", "-c", "sleep 1; echo $N", "x"]),
            &[("N", &n)],
            None,
        );
        c.send(&Frame::Spawn(spawn))?;
    }
    let all_done = |a: &Agent| (100..125).all(|i| a.outcomes[&i].done());
    c.wait(all_done, Duration::from_secs(120), "25 processes")?;
    let good = ids.iter().all(|i| {
        let o = &c.outcomes[i];
        o.stdout == format!("{i}\n").as_bytes() && o.exited == Some(0)
    });
    let secs = t0.elapsed().as_secs_f64();
    check(
        good,
        &format!("25 concurrent processes ({secs:.2} s wall, each sleeps 1 s)"),
    )
}
