//! The `http-get` command, run as a user would: fetch `http_get_url` (a
//! URL of httpd's, through tcpip) and check the body's length, with `-i`
//! the head before it; then fetch a page of the same server that does not
//! exist and check that the 404 is a failure. Logs `netcheck: http-get
//! ok: ...` or `netcheck: http-get FAILED: ...`.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::command::Input;
use starina::command::Spawner;
use starina::command::Stdio;
use starina::Channel;

/// The most output read from one run.
const OUTPUT_MAX: usize = 4 << 20;

/// Runs `http-get args...` with an empty stdin: (status, stdout, stderr).
fn run(spawn: &Spawner, args: &[&str]) -> Result<(i32, Vec<u8>, String), String> {
    run_command(spawn, "http-get", args)
}

/// Runs command `name` with `args` and an empty stdin: (status, stdout,
/// stderr).
pub fn run_command(
    spawn: &Spawner,
    name: &str,
    args: &[&str],
) -> Result<(i32, Vec<u8>, String), String> {
    let (stdio, peer) = Stdio::pipes().map_err(|e| format!("pipes: {e}"))?;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let job = spawn
        .spawn(name, &args, &[], stdio)
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    drop(peer.stdin);
    let read = |ch: Channel| {
        Input::new(ch)
            .read_to_end(OUTPUT_MAX)
            .map_err(|e| e.to_string())
    };
    let out = read(peer.stdout)?;
    let err = String::from_utf8_lossy(&read(peer.stderr)?).into_owned();
    let status = job.wait().map_err(|e| format!("waiting for {name}: {e}"))?;
    Ok((status, out, err))
}

fn check(spawn: &Spawner, url: &str, want_bytes: usize) -> Result<String, String> {
    let (status, out, err) = run(spawn, &[url])?;
    if status != 0 || out.len() != want_bytes {
        return Err(format!(
            "{url}: status {status}, {} bytes (want {want_bytes}), stderr {err:?}",
            out.len()
        ));
    }
    // `-i`: the head first, then the same body.
    let (status, out, err) = run(spawn, &["-i", url])?;
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let head_ok =
        out.starts_with(b"HTTP/1.") && head_end.map(|e| out.len() - e) == Some(want_bytes);
    if status != 0 || !head_ok {
        return Err(format!(
            "-i {url}: status {status}, {} bytes without a head before the body, stderr {err:?}",
            out.len()
        ));
    }
    let origin_end = url.match_indices('/').nth(2).map_or(url.len(), |(i, _)| i);
    let missing = format!("{}/netcheck-no-such-page", &url[..origin_end]);
    let (status, out, err) = run(spawn, &[&missing])?;
    if status != 1 || !out.is_empty() || !err.contains(" 404 ") {
        return Err(format!(
            "{missing}: status {status}, {} bytes, stderr {err:?}",
            out.len()
        ));
    }
    Ok(format!(
        "{want_bytes} bytes from {url} (and with -i the head first); {missing}: {}",
        err.trim_end()
    ))
}

/// Runs the check and logs its result.
pub fn check_and_log(spawn: &Spawner, url: &str, want_bytes: usize) {
    match check(spawn, url, want_bytes) {
        Ok(summary) => log::info!("netcheck: http-get ok: {summary}"),
        Err(why) => log::error!("netcheck: http-get FAILED: {why}"),
    }
}
