//! Native commands from Linux, end to end: in Starina's Linux (the `linux`
//! profile, through `scripts/starina exec`), `starina CMD ARGS...` runs
//! native command CMD (the guest agent relays it to the linux server,
//! which starts it with privilege `spawn`) with the Linux program's
//! streams and exit status. One boot runs every check; each prints
//! `key=value`. Boots Starina and Linux under QEMU: slow, run by `make test`.

use std::collections::BTreeMap;

use starina_tests::exec_sh;
use starina_tests::http;

/// Per-run limit (boot included), seconds.
const TIMEOUT: f64 = 300.0;

const SCRIPT: &str = r#"
echo "which=$(command -v starina)"
echo "echo=$(starina echo hi there)"
echo "lines=$(seq 1 1000 | starina cat | wc -l)"
echo "ps=$(starina ps | grep -c '^linux ')"
out=$(seq 1 1000 | starina wc -l 2>/dev/null); echo "native_wc=$? $out"
starina false; echo "false=$?"
starina true; echo "true=$?"
starina crash status 42; echo "status=$?"
starina nosuch 2>/tmp/err; echo "nosuch=$? $(cat /tmp/err)"
starina stop fs 2>/tmp/err; echo "refused=$? $(cat /tmp/err)"
D=/mnt/starina/native-e2e
mkdir -p $D && echo 'written by linux' > $D/f.txt
echo "translated=$(starina cat $D/f.txt)"
starina cat $D/f.txt > /tmp/x; echo "redirect=$? $(cat /tmp/x)"
starina cat $D/nope 2>/tmp/merr; echo "missing=$? $(cat /tmp/merr)"
start=$(date +%s)
echo "head=$(yes | head -c 10000000 | starina cat | head -1)"
echo "pipe_seconds=$(( $(date +%s) - start ))"
head -c 3000000 /dev/zero | starina crash status 3; echo "unread_stdin=$?"
starina crash panic 2>/tmp/perr; echo "panic=$? $(head -c 300 /tmp/perr | tr '\n' ' ')"
starina crash spin & pid=$!
sleep 2
kill -INT $pid; wait $pid; echo "sigint=$?"
starina crash spin & pid=$!
sleep 1
kill -KILL $pid; wait $pid; echo "sigkill=$?"
sleep 1
echo "left=$(ps -o pid,args | grep -v grep | grep -c 'starina ')"
echo "big=$(head -c 2000000 /dev/urandom | tee /tmp/big | starina cat | md5sum | cut -c1-32) $(md5sum < /tmp/big | cut -c1-32)"
echo done=yes
"#;

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn linux_programs_run_native_commands() {
    let input = Box::new(std::io::empty());
    let (code, out, err) = exec_sh::exec_sh("linux", SCRIPT, input, http::free_port(), TIMEOUT);
    println!("--- stdout:\n{out}");
    let values: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |key: &str| {
        *values
            .get(key)
            .unwrap_or_else(|| panic!("no '{key}=' in the output (exit {code}):\n{out}\n{err}"))
    };
    assert_eq!(get("done"), "yes");
    assert_eq!(get("which"), "/usr/local/bin/starina");
    assert_eq!(get("echo"), "hi there");
    assert_eq!(get("lines").trim(), "1000");
    // Native wc counting what Linux's seq wrote.
    assert_eq!(get("native_wc"), "0 1000");
    assert_eq!(get("ps"), "1", "starina ps lists the linux server");
    assert_eq!(get("false"), "1");
    assert_eq!(get("true"), "0");
    assert_eq!(get("status"), "42");
    assert_eq!(get("nosuch"), "127 starina: no native command 'nosuch'");
    // The guest cannot stop native components.
    assert!(get("refused").starts_with("126 ") && get("refused").contains("not available to Linux"),
        "{}", get("refused"));
    assert_eq!(get("translated"), "written by linux");
    assert_eq!(get("redirect"), "0 written by linux");
    let missing = get("missing");
    assert!(
        missing.starts_with("1 cat: /native-e2e/nope: "),
        "{missing}"
    );
    // Broken pipe both ways, promptly.
    assert_eq!(get("head"), "y");
    let seconds: u64 = get("pipe_seconds").parse().unwrap();
    assert!(
        seconds <= 20,
        "yes | head | starina cat | head -1 took {seconds} s"
    );
    assert_eq!(get("unread_stdin"), "3");
    let panic = get("panic");
    assert!(panic.starts_with("134 "), "{panic}");
    assert!(panic.contains("panic"), "no panic message: {panic}");
    // Ctrl-C kills the command and then `starina`, by SIGINT (128 + 2).
    assert_eq!(get("sigint"), "130");
    assert_eq!(get("sigkill"), "137");
    assert_eq!(get("left"), "0", "starina processes left behind");
    let big = get("big");
    let (through, direct) = big.split_once(' ').unwrap();
    assert_eq!(through, direct, "2 MB of random bytes through starina cat");
    assert_eq!(code, 0, "{err}");
    // The commands the guest killed (the broken pipe of head -1, SIGINT,
    // SIGKILL) all ended on the native side too.
    let killed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("killed for the guest"))
        .collect();
    assert_eq!(killed.len(), 3, "{killed:#?}");
    assert!(
        killed.iter().all(|l| l.contains("ended with status 137")),
        "{killed:#?}"
    );
}

/// On a Debian root (the disk's partition 2) too: the agent links
/// `/usr/local/bin/starina` to its copy at boot.
#[test]
#[ignore = "builds the Debian image and boots Starina and Linux under QEMU; run by make test"]
fn debian_programs_run_native_commands() {
    use starina_tests::instance::text;
    use starina_tests::instance::DebianInstance;
    let instance = DebianInstance::up();
    let script = "readlink /usr/local/bin/starina; starina echo from debian; \
                  seq 1 100 | starina cat | wc -l; starina false; echo $?";
    let out = instance.tool.exec(&instance.disk, &["bash", "-c", script]);
    assert_eq!(
        text(&out.stdout),
        "/run/starina/agent\nfrom debian\n100\n1\n",
        "{}",
        text(&out.stderr)
    );
}
