//! What every command shares: where the repository and the cache are, which
//! QEMU to run, the stop request (signals), and where messages go.

use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The kernel image `build-kernel` produces, relative to the repository.
pub const KERNEL_IMAGE: &str = "target/kernel/x86_64-unknown-linux-gnu/kernel/starina-kernel";

/// The host's settings (environment variables read once, here).
#[derive(Clone, Debug)]
pub struct Host {
    /// The repository root.
    pub root: PathBuf,
    /// The QEMU binary (`STARINA_QEMU`, default `qemu-system-x86_64`).
    pub qemu: String,
    /// The cache directory (`STARINA_CACHE`, default `~/.cache/starina`).
    pub cache: PathBuf,
    /// The host port forwarded to the guest's port 80 (`STARINA_HTTP_PORT`, default 8080).
    pub http_port: u16,
    /// Whether stdin is a terminal (an interactive console for `run`).
    pub interactive: bool,
    /// Set by signals (or by a caller) to stop what is running.
    pub stop: Arc<Stop>,
    /// Extra environment variables for QEMU (the tests' fake QEMU reads them).
    pub qemu_env: Vec<(String, String)>,
}

impl Host {
    /// Settings from the environment; the repository is the one this crate is in.
    pub fn from_env() -> Host {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = env("HOME").unwrap_or_else(|| "/root".into());
        Host {
            root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("host/ has a parent")
                .to_path_buf(),
            qemu: env("STARINA_QEMU").unwrap_or_else(|| "qemu-system-x86_64".into()),
            cache: env("STARINA_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(&home).join(".cache/starina")),
            http_port: env("STARINA_HTTP_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080),
            interactive: std::io::stdin().is_terminal(),
            stop: Arc::new(Stop::default()),
            qemu_env: Vec::new(),
        }
    }

    /// The same settings with a free host port for the guest's port 80,
    /// unless `STARINA_HTTP_PORT` names one: test boots must not meet a
    /// `make run` (or another test) holding the default port.
    pub fn with_free_http_port(&self) -> Host {
        let mut host = self.batch();
        if std::env::var_os("STARINA_HTTP_PORT").is_none() {
            if let Some(port) = free_port() {
                host.http_port = port;
            }
        }
        host
    }

    /// The same settings, never interactive (for runs whose output is read back).
    pub fn batch(&self) -> Host {
        Host {
            interactive: false,
            ..self.clone()
        }
    }

    /// The built kernel image.
    pub fn kernel_image(&self) -> PathBuf {
        self.root.join(KERNEL_IMAGE)
    }
}

/// A request to stop: the signals received (SIGINT, SIGTERM, SIGHUP), or a
/// caller's own request.
#[derive(Debug, Default)]
pub struct Stop {
    first: AtomicI32,
    count: AtomicUsize,
}

impl Stop {
    /// Records `signal` (the first one is what the status reports).
    pub fn request(&self, signal: i32) {
        let _ = self
            .first
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// The first signal, if any was received.
    pub fn signal(&self) -> Option<i32> {
        match self.first.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// How many stop requests arrived.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// Routes SIGINT, SIGTERM and SIGHUP to `stop` (from a thread of its own).
pub fn catch_signals(stop: Arc<Stop>) -> std::io::Result<()> {
    use signal_hook::consts::SIGHUP;
    use signal_hook::consts::SIGINT;
    use signal_hook::consts::SIGTERM;
    catch(stop, &[SIGINT, SIGTERM, SIGHUP])
}

/// For a process that outlives its terminal (an instance's): SIGINT and
/// SIGTERM go to `stop`, SIGHUP is ignored.
pub fn catch_signals_but_hangup(stop: Arc<Stop>) -> std::io::Result<()> {
    use signal_hook::consts::SIGHUP;
    use signal_hook::consts::SIGINT;
    use signal_hook::consts::SIGTERM;
    signal_hook::flag::register(SIGHUP, Arc::new(std::sync::atomic::AtomicBool::new(false)))?;
    catch(stop, &[SIGINT, SIGTERM])
}

fn catch(stop: Arc<Stop>, which: &[i32]) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(which)?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            stop.request(signal);
        }
    });
    Ok(())
}

/// Where a command writes: `out` is its product (the serial console, the
/// command's stdout, figures), `err` its messages. Write errors on `err`
/// are ignored (nobody to tell).
pub struct Streams<'a> {
    pub out: &'a mut (dyn Write + Send),
    pub err: &'a mut (dyn Write + Send),
}

impl Streams<'_> {
    /// `starina: <msg>` on the message stream.
    pub fn say(&mut self, msg: &str) {
        let _ = writeln!(self.err, "starina: {msg}");
        let _ = self.err.flush();
    }

    /// Raw bytes on the message stream.
    pub fn err_bytes(&mut self, data: &[u8]) {
        let _ = self.err.write_all(data);
        let _ = self.err.flush();
    }
}

/// `1` for 1.0, `2.5` for 2.5: seconds as the user wrote them.
pub fn fmt_seconds(secs: f64) -> String {
    format!("{secs}")
}

/// A command line as a shell would read it back.
pub fn shell_quote(argv: &[String]) -> String {
    let quote = |a: &String| {
        let plain = !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
        if plain {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_keeps_the_first_signal() {
        let stop = Stop::default();
        assert_eq!(stop.signal(), None);
        stop.request(2);
        stop.request(15);
        assert_eq!((stop.signal(), stop.count()), (Some(2), 2));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_seconds(1.0), "1");
        assert_eq!(fmt_seconds(2.5), "2.5");
        let argv = [
            "qemu".to_string(),
            "-append".into(),
            "a b".into(),
            "it's".into(),
        ];
        assert_eq!(shell_quote(&argv), r"qemu -append 'a b' 'it'\''s'");
    }
}
