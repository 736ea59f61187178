//! Native commands beside Linux processes, in the same boot (issue 13):
//! starting `true` as a native command and getting its status, against
//! fork+exec+wait in the guest; 64 MiB through `cat | wc -c` natively and
//! in the guest.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::markers::BENCH_RAW;
use starina::command::Input;
use starina::command::Output;
use starina::command::Request;
use starina::command::Spawner;
use starina::command::Stdio;
use starina::timer::now_ns;

use crate::expect_status;
use crate::Bench;

/// The bytes each pipe throughput figure moves.
pub const PIPE_BYTES: usize = 64 << 20;

/// Median time of starting `true` natively and receiving its status.
pub fn command_round_trip(spawn: &Spawner, runs: usize) -> Result<(), String> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let (stdio, peer) = Stdio::pipes().map_err(|e| format!("{e}"))?;
        let start = now_ns();
        let job = spawn
            .spawn_request(&Request::new("true", &[]), stdio)
            .map_err(|e| format!("spawn true: {e}"))?;
        let status = job.wait().map_err(|e| format!("{e}"))?;
        let ns = now_ns() - start;
        drop(peer);
        if status != 0 {
            return Err(format!("native true exited {status}"));
        }
        if i >= 5 {
            times.push(ns);
        }
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    log::info!(
        "native true: min {} median {median} max {} ns over {runs} runs",
        times[0],
        times[times.len() - 1]
    );
    log::info!("{BENCH_RAW} native_cmd_roundtrip {median}");
    Ok(())
}

/// 64 MiB through native `cat | wc -c` (the bench writes cat's stdin from
/// a thread of its own and reads wc's count), then through the guest's.
pub fn pipe_throughput(spawn: &Spawner, b: &mut Bench) -> Result<(), String> {
    let e = |e: starina::Error| format!("{e}");
    let (pipe_w, pipe_r) = starina::channel::Channel::create().map_err(e)?;
    let (cat_io, cat_peer) = Stdio::pipes().map_err(e)?;
    let (wc_io, wc_peer) = Stdio::pipes().map_err(e)?;
    let start = now_ns();
    let cat = spawn
        .spawn_request(&Request::new("cat", &[]), Stdio { stdout: pipe_w, ..cat_io })
        .map_err(|e| format!("spawn cat: {e}"))?;
    let wc = spawn
        .spawn_request(&Request::new("wc", &["-c"]), Stdio { stdin: pipe_r, ..wc_io })
        .map_err(|e| format!("spawn wc: {e}"))?;
    let mut feed = Output::new(cat_peer.stdin);
    starina::thread::spawn(move || {
        let chunk = alloc::vec![b'x'; 16 * 1024];
        for _ in 0..PIPE_BYTES / chunk.len() {
            if feed.write(&chunk).is_err() {
                return;
            }
        }
        let _ = feed.close();
    })
    .map_err(e)?;
    let count = Input::new(wc_peer.stdout)
        .read_to_end(64)
        .map_err(|e| format!("wc's output: {e}"))?;
    let (cat_status, wc_status) = (cat.wait().map_err(e)?, wc.wait().map_err(e)?);
    let ns = now_ns() - start;
    let text = String::from_utf8_lossy(&count);
    if cat_status != 0 || wc_status != 0 || text.trim() != format!("{PIPE_BYTES}") {
        return Err(format!("native cat | wc -c: {cat_status}/{wc_status}, {text:?}"));
    }
    log::info!("{BENCH_RAW} native_pipe_64mib {ns}");
    let script = format!("head -c {PIPE_BYTES} /dev/zero | cat | wc -c");
    let run = b.exec(&["sh", "-c", &script])?;
    expect_status(&run, 0, "head | cat | wc -c")?;
    let out = String::from_utf8_lossy(&run.stdout);
    if out.trim() != format!("{PIPE_BYTES}") {
        return Err(format!("the guest's cat | wc -c said {out:?}"));
    }
    log::info!("{BENCH_RAW} linux_pipe_64mib {}", run.ns);
    Ok(())
}
