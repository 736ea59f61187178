//! The message stress test: a ring of `msgring` commands (one component
//! each) passing numbered, checksummed messages round and round, spread
//! over every CPU. Each node checks each sender's sequence and checksums
//! as the messages pass; here every node's counts must add up.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::CpuStats;
use starina::abi::Readiness;
use starina::channel::Channel;
use starina::command::Input;
use starina::command::Job;
use starina::command::Stdio;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;

use super::Ctx;
use super::TestResult;

/// Messages on their way per node at once: the ring's queues never fill
/// (`msgring` checks nodes * window <= the queue's length).
const WINDOW: u32 = 8;
/// How long the whole ring may take.
const DEADLINE_MS: u64 = 240_000;

/// A node's `node N sent S returned R forwarded F sum X` line: (S, R, F, X).
fn report(line: &str) -> Option<(u64, u64, u64, u64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        let at = words.iter().position(|w| *w == name)?;
        words.get(at + 1)?.parse::<u64>().ok()
    };
    Some((
        field("sent")?,
        field("returned")?,
        field("forwarded")?,
        field("sum")?,
    ))
}

/// Starts `nodes` nodes, node i reading from node i-1 and writing to
/// node i+1; their jobs and the ends their reports come on.
fn start_ring(cx: &Ctx, nodes: u32, count: u32, cpus: u32) -> Result<Vec<(Job, Channel)>, String> {
    let mut links: Vec<(Option<Channel>, Option<Channel>)> = Vec::new();
    for _ in 0..nodes {
        let (tx, rx) = Channel::create().map_err(|e| e.to_string())?;
        links.push((Some(tx), Some(rx)));
    }
    let mut started = Vec::new();
    for i in 0..nodes as usize {
        let before = (i + nodes as usize - 1) % nodes as usize;
        let stdin = links[before].1.take().ok_or("ring wiring")?;
        let stdout = links[i].0.take().ok_or("ring wiring")?;
        let (stderr, report) = Channel::create().map_err(|e| e.to_string())?;
        // Spread evenly: node i on CPU i mod the CPUs.
        let cpu = i as u32 % cpus.max(1);
        let args = [i as u32, nodes, count, WINDOW, cpu].map(|n| n.to_string());
        let stdio = Stdio {
            stdin,
            stdout,
            stderr,
        };
        let job = cx
            .spawn
            .spawn("msgring", &args, &[], stdio)
            .map_err(|e| format!("spawn msgring {i}: {e}"))?;
        started.push((job, report));
    }
    Ok(started)
}

/// Waits for every job to end, at most [`DEADLINE_MS`]; their statuses.
fn wait_all(jobs: &[(Job, Channel)]) -> Result<Vec<i32>, String> {
    let poll = Poll::create().map_err(|e| e.to_string())?;
    let timer = Timer::create().map_err(|e| e.to_string())?;
    poll.add(timer.id(), Readiness::READABLE)
        .map_err(|e| e.to_string())?;
    for (job, _) in jobs {
        poll.add(job.id(), Readiness::READABLE)
            .map_err(|e| e.to_string())?;
    }
    timer.set_ms(DEADLINE_MS).map_err(|e| e.to_string())?;
    let mut ended = 0;
    while ended < jobs.len() {
        let (id, _) = poll.wait().map_err(|e| e.to_string())?;
        if id == timer.id() {
            return Err(format!(
                "{} of {} nodes still ran after {DEADLINE_MS} ms",
                jobs.len() - ended,
                jobs.len()
            ));
        }
        poll.remove(id).map_err(|e| e.to_string())?;
        ended += 1;
    }
    jobs.iter()
        .map(|(job, _)| job.wait().map_err(|e| e.to_string()))
        .collect()
}

/// Each CPU's switches since `before`.
fn switches_since(cx: &Ctx, before: &[CpuStats]) -> Result<Vec<u64>, String> {
    let now = cx.monitor.cpus().map_err(|e| e.to_string())?;
    Ok(now
        .iter()
        .zip(before)
        .map(|(n, b)| n.switches - b.switches)
        .collect())
}

/// `ring_nodes` components (8), node i pinned to CPU i mod the CPU
/// count, pass `ring_nodes` * `ring_nodes` * `ring_messages` messages
/// (1,000,000) round a ring; every node sees every sender's messages
/// once, in order, with right checksums; on several CPUs each CPU ran
/// threads meanwhile. (About 7 s of guest time
/// on one CPU or four under TCG here.)
pub fn messages_among_eight_components(cx: &mut Ctx) -> TestResult {
    let before = cx.monitor.cpus().map_err(|e| e.to_string())?;
    let (nodes, count) = (cx.ring_nodes, cx.ring_messages);
    let start = now_ns();
    let jobs = start_ring(cx, nodes, count, before.len() as u32)?;
    let statuses = wait_all(&jobs)?;
    let elapsed = now_ns() - start;
    let switches = switches_since(cx, &before)?;
    let mut sums = Vec::new();
    for (i, ((_, report_ch), status)) in jobs.into_iter().zip(&statuses).enumerate() {
        let text = Input::new(report_ch)
            .read_to_end(4096)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&text);
        check!(
            *status == 0,
            "node {i} ended with {status}: {}",
            text.trim()
        );
        let Some((sent, returned, forwarded, sum)) = report(&text) else {
            return Err(format!("node {i} reported {:?}", text.trim()));
        };
        let others = u64::from(count) * u64::from(nodes - 1);
        check!(
            sent == u64::from(count) && returned == sent && forwarded == others,
            "node {i}: {}",
            text.trim()
        );
        sums.push(sum);
    }
    check!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "the nodes saw different checksums: {sums:?}"
    );
    let moved = u64::from(nodes) * u64::from(nodes) * u64::from(count);
    log::info!(
        "msgring: {nodes} components moved {moved} messages in {} ms ({} per second), CPUs: {}; threads switched in per CPU {switches:?}",
        elapsed / 1_000_000,
        moved * 1_000_000_000 / elapsed.max(1),
        before.len()
    );
    if before.len() > 1 {
        check!(
            switches.iter().all(|&n| n > 0),
            "a CPU ran no thread during the ring: {switches:?}"
        );
    }
    Ok(())
}
