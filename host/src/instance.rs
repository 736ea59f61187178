//! Running instances (`starina up`): where each keeps its files, what it
//! says about itself, and how a client reaches it. One instance per disk
//! image: its directory is named after the image's absolute path, under
//! `$XDG_RUNTIME_DIR/starina/instances` (else
//! `~/.local/state/starina/instances`), and holds
//!
//! - `lock`: held (flock) by the instance's process while it runs, so that
//!   a second `up` on the same disk fails;
//! - `info`: `key=value` lines ([`Info`]), replaced whole as it changes;
//! - `control.sock`: the Unix socket clients connect to; a connection
//!   starts with one line, `exec`, `status` or `down` ([`Request`]);
//! - `hostlink.sock`, `monitor.sock`: QEMU's; `console.log`, `server.log`.

use std::fs::File;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::SystemTime;

/// What a connection to `control.sock` asks for (its first line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Frames of the process protocol follow, both ways.
    Exec,
    /// The instance answers with its [`Info`] lines and `live=N`.
    Status,
    /// Sync the guest and stop; progress lines come back until it is down.
    Down,
}

impl Request {
    pub fn line(self) -> &'static str {
        match self {
            Request::Exec => "exec",
            Request::Status => "status",
            Request::Down => "down",
        }
    }

    pub fn parse(line: &str) -> Option<Request> {
        match line.trim_end() {
            "exec" => Some(Request::Exec),
            "status" => Some(Request::Status),
            "down" => Some(Request::Down),
            _ => None,
        }
    }
}

/// What an instance says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub pid: u32,
    pub profile: String,
    pub machine: String,
    pub disk: PathBuf,
    pub http_port: u16,
    /// Seconds since the epoch.
    pub started: u64,
    /// `booting`, `ready` or `stopping`.
    pub state: String,
    /// What Linux runs from once ready (`Debian 12.9 root`, `initramfs`).
    pub linux: String,
    /// The profile's components.
    pub components: Vec<String>,
}

impl Info {
    pub fn encode(&self) -> String {
        format!(
            "pid={}\nprofile={}\nmachine={}\ndisk={}\nhttp_port={}\nstarted={}\nstate={}\nlinux={}\ncomponents={}\n",
            self.pid,
            self.profile,
            self.machine,
            self.disk.display(),
            self.http_port,
            self.started,
            self.state,
            self.linux,
            self.components.join(","),
        )
    }

    /// The lines of [`Info::encode`]; unknown keys are skipped.
    pub fn decode(text: &str) -> Info {
        let mut info = Info::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            match key {
                "pid" => info.pid = value.parse().unwrap_or(0),
                "profile" => info.profile = value.into(),
                "machine" => info.machine = value.into(),
                "disk" => info.disk = value.into(),
                "http_port" => info.http_port = value.parse().unwrap_or(0),
                "started" => info.started = value.parse().unwrap_or(0),
                "state" => info.state = value.into(),
                "linux" => info.linux = value.into(),
                "components" => {
                    info.components = value
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect()
                }
                _ => {}
            }
        }
        info
    }

    /// Seconds since it started.
    pub fn uptime(&self) -> u64 {
        now().saturating_sub(self.started)
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2h 3m`, `4m 5s`, `6s`.
pub fn fmt_uptime(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

/// Where the instances' directories are.
pub fn instances_root() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    match (env("XDG_RUNTIME_DIR"), env("HOME")) {
        (Some(run), _) => Path::new(&run).join("starina/instances"),
        (None, Some(home)) => Path::new(&home).join(".local/state/starina/instances"),
        (None, None) => PathBuf::from("/tmp/starina-instances"),
    }
}

/// The instance directory of the disk image `disk` (which need not exist
/// yet).
pub fn dir_for(disk: &Path) -> PathBuf {
    instances_root().join(disk_key(disk))
}

/// A file name for the disk image `disk`: its own name and a hash of its
/// absolute path.
pub fn disk_key(disk: &Path) -> String {
    let absolute = absolute(disk);
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    let hash = absolute
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("{name}-{hash:016x}")
}

/// `disk` made absolute, with symlinks resolved (its directory's only, if
/// it does not exist yet).
pub fn absolute(disk: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(disk) {
        return real;
    }
    let abs = std::path::absolute(disk).unwrap_or_else(|_| disk.to_path_buf());
    match (abs.parent().map(std::fs::canonicalize), abs.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => abs,
    }
}

/// One instance's files.
#[derive(Clone, Debug)]
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn info_path(&self) -> PathBuf {
        self.0.join("info")
    }
    pub fn control(&self) -> PathBuf {
        self.0.join("control.sock")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.0.join("lock")
    }
    pub fn console_log(&self) -> PathBuf {
        self.0.join("console.log")
    }
    pub fn server_log(&self) -> PathBuf {
        self.0.join("server.log")
    }

    pub fn read_info(&self) -> Option<Info> {
        std::fs::read_to_string(self.info_path())
            .ok()
            .map(|text| Info::decode(&text))
    }

    /// Replaces `info` whole (readers never see half of it).
    pub fn write_info(&self, info: &Info) -> std::io::Result<()> {
        let tmp = self.0.join("info.new");
        std::fs::write(&tmp, info.encode())?;
        std::fs::rename(tmp, self.info_path())
    }

    /// Takes the instance's lock: `Ok(None)` if another process holds it.
    pub fn lock(&self) -> std::io::Result<Option<File>> {
        std::fs::create_dir_all(&self.0)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_path())?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Whether a process holds the lock (the instance is up or starting).
    pub fn held(&self) -> bool {
        if !self.lock_path().exists() {
            return false;
        }
        matches!(self.lock(), Ok(None))
    }

    /// Removes the directory of an instance that has ended (its lock file
    /// there and free). One without a lock file is still starting.
    fn remove_if_stale(&self) {
        if self.lock_path().exists() && !self.held() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A connection to the instance that asked for `request`.
    pub fn connect(&self, request: Request) -> std::io::Result<UnixStream> {
        let mut stream = UnixStream::connect(self.control())?;
        stream.write_all(format!("{}\n", request.line()).as_bytes())?;
        Ok(stream)
    }

    /// The instance's own answer to `status`: its info and live sessions.
    pub fn query(&self) -> Option<(Info, usize)> {
        let stream = self.connect(Request::Status).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut text = String::new();
        for line in BufReader::new(stream).lines() {
            text.push_str(&line.ok()?);
            text.push('\n');
        }
        let live = text
            .lines()
            .find_map(|l| l.strip_prefix("live="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Some((Info::decode(&text), live))
    }
}

/// The instance on `disk`, if one is up (its lock held); a directory left
/// by one that died is removed.
pub fn find(disk: &Path) -> Option<Dir> {
    let dir = Dir(dir_for(disk));
    if dir.held() {
        return Some(dir);
    }
    dir.remove_if_stale();
    None
}

/// The instance `exec` uses: the one on `disk`; without `--disk`, the one
/// on the default disk, else the only one up.
pub fn for_exec(disk: Option<&Path>) -> Option<Dir> {
    if let Some(disk) = disk {
        return find(disk);
    }
    if let Some(dir) = find(&crate::disk::default_path()) {
        return Some(dir);
    }
    let mut up = all();
    (up.len() == 1).then(|| up.remove(0))
}

/// Every instance that is up (or starting), by directory name.
pub fn all() -> Vec<Dir> {
    let Ok(entries) = std::fs::read_dir(instances_root()) else {
        return Vec::new();
    };
    let mut dirs: Vec<Dir> = entries
        .filter_map(|e| e.ok())
        .map(|e| Dir(e.path()))
        .filter(|d| d.0.is_dir())
        .collect();
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    dirs.retain(|d| {
        let up = d.held();
        if !up {
            d.remove_if_stale();
        }
        up
    });
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trips() {
        let info = Info {
            pid: 42,
            profile: "linux".into(),
            machine: "q35".into(),
            disk: "/d/disk.img".into(),
            http_port: 8080,
            started: 1_700_000_000,
            state: "ready".into(),
            linux: "Debian 12.9 root".into(),
            components: vec!["linux".into(), "hostlink".into()],
        };
        assert_eq!(Info::decode(&info.encode()), info);
        assert_eq!(Info::decode("junk\nlive=3\n"), Info::default());
        assert_eq!(fmt_uptime(5), "5s");
        assert_eq!(fmt_uptime(125), "2m 5s");
        assert_eq!(fmt_uptime(7300), "2h 1m");
        for r in [Request::Exec, Request::Status, Request::Down] {
            assert_eq!(Request::parse(&format!("{}\n", r.line())), Some(r));
        }
        assert_eq!(Request::parse("panic"), None);
    }

    #[test]
    fn one_directory_per_disk_and_one_lock_holder() {
        let a = dir_for(Path::new("/tmp/x/disk.img"));
        let b = dir_for(Path::new("/tmp/y/disk.img"));
        assert_ne!(a, b);
        // A symlink to an image is the same disk.
        let tmp = crate::exec::TempDir::new("starina-instance-link").unwrap();
        let image = tmp.0.join("disk.img");
        std::fs::write(&image, b"").unwrap();
        std::os::unix::fs::symlink(&image, tmp.0.join("link.img")).unwrap();
        assert_eq!(dir_for(&image), dir_for(&tmp.0.join("link.img")));
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("disk.img-"));
        let tmp = crate::exec::TempDir::new("starina-instance-test").unwrap();
        let dir = Dir(tmp.0.join("inst"));
        assert!(!dir.held());
        let held = dir.lock().unwrap().expect("the lock is free");
        // flock is per open file: a second open (another `up`) is refused.
        assert!(dir.lock().unwrap().is_none());
        assert!(dir.held());
        drop(held);
        assert!(!dir.held());
        assert!(dir.query().is_none());
    }
}
