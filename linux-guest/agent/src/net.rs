//! The guest's network configuration, done by PID 1 at boot.
//!
//! `lo` is always brought up (Linux gives it 127.0.0.1/8 then). When the
//! kernel command line has `starina.net=<guest ip>/<prefix>,<gateway ip>`
//! (the linux server adds it when it gives the guest a NIC), the first
//! Ethernet interface gets that address, is brought up, and gets a default
//! route via the gateway, which is also the name server
//! (`/etc/resolv.conf`). A bad or missing value, or a failed step, is one
//! `starina-agent: network: ...` line on the console and no network: never
//! a failed boot.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use crate::log;
use crate::netif::Control;

/// The network the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetSpec {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl NetSpec {
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }
}

/// Why the command line gives no usable network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// No `starina.net=` word.
    Missing,
    /// A `starina.net=` value that does not parse or makes no sense.
    Bad { value: String, why: &'static str },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Missing => write!(f, "no starina.net= on the kernel command line"),
            SpecError::Bad { value, why } => write!(
                f,
                "bad starina.net={value:?} ({why}; want <ip>/<prefix>,<gateway>, e.g. \
                 10.0.3.15/24,10.0.3.2)"
            ),
        }
    }
}

/// Parses the command line's `starina.net=<ip>/<prefix>,<gateway>` (the
/// first one, if several). The prefix is 1 to 31 and the gateway must be
/// another address on the guest's subnet.
pub fn spec_from_cmdline(cmdline: &str) -> Result<NetSpec, SpecError> {
    let value = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("starina.net="))
        .ok_or(SpecError::Missing)?;
    let bad = |why| SpecError::Bad {
        value: value.to_string(),
        why,
    };
    let (cidr, gateway) = value.split_once(',').ok_or(bad("no ,<gateway>"))?;
    let (address, prefix) = cidr.split_once('/').ok_or(bad("no /<prefix>"))?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| bad("the address is not IPv4"))?;
    let gateway: Ipv4Addr = gateway
        .parse()
        .map_err(|_| bad("the gateway is not IPv4"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| bad("the prefix is not a number"))?;
    if !(1..=31).contains(&prefix) {
        return Err(bad("the prefix is not 1 to 31"));
    }
    let unicast = |a: Ipv4Addr| {
        !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
    };
    if !unicast(address) {
        return Err(bad("the address is not a unicast address"));
    }
    if !unicast(gateway) || gateway == address {
        return Err(bad("the gateway is not another unicast address"));
    }
    let spec = NetSpec {
        address,
        prefix,
        gateway,
    };
    let mask = u32::from(spec.netmask());
    if u32::from(address) & mask != u32::from(gateway) & mask {
        return Err(bad("the gateway is not on the guest's subnet"));
    }
    Ok(spec)
}

/// How long to wait for the NIC to show up (virtio devices are probed
/// before init runs, but be lenient, as for the control device).
const NIC_WAIT: Duration = Duration::from_secs(2);

/// Brings `lo` up and, when the command line asks for it, the guest's NIC.
/// Returns the guest's address when the network is configured.
pub fn configure() -> Option<Ipv4Addr> {
    let control = match Control::open() {
        Ok(c) => c,
        Err(e) => {
            log(&format!(
                "network: cannot open an AF_INET socket: {e}; no network"
            ));
            return None;
        }
    };
    if let Err(e) = control.set_up("lo") {
        log(&format!("network: cannot bring lo up: {e}"));
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let spec = match spec_from_cmdline(&cmdline) {
        Ok(spec) => spec,
        Err(e) => {
            log(&format!("network: {e}; no network"));
            return None;
        }
    };
    let Some(nic) = wait_for_nic() else {
        log("network: no Ethernet interface besides lo; no network");
        return None;
    };
    if let Err(e) = configure_nic(&control, &nic, &spec) {
        log(&format!("network: {nic}: {e}; no network"));
        return None;
    }
    write_resolver_files(spec.gateway);
    let mtu = control
        .mtu(&nic)
        .map_or_else(|e| format!("unknown ({e})"), |m| m.to_string());
    log(&format!(
        "network: {nic} {}/{} gateway {} mtu {mtu}",
        spec.address, spec.prefix, spec.gateway
    ));
    Some(spec.address)
}

fn configure_nic(control: &Control, nic: &str, spec: &NetSpec) -> Result<(), String> {
    let step = |what: &str, r: io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    step("set address", control.set_address(nic, spec.address))?;
    step("set netmask", control.set_netmask(nic, spec.netmask()))?;
    step("bring up", control.set_up(nic))?;
    step(
        "add default route",
        control.add_default_route(nic, spec.gateway),
    )
}

fn wait_for_nic() -> Option<String> {
    let start = Instant::now();
    loop {
        if let Some(nic) = first_ethernet(Path::new("/sys/class/net")) {
            return Some(nic);
        }
        if start.elapsed() >= NIC_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ARPHRD_ETHER, in /sys/class/net/<if>/type.
const ARPHRD_ETHER: &str = "1";

/// The Ethernet interface with the lowest index (eth0), from sysfs.
fn first_ethernet(sys_class_net: &Path) -> Option<String> {
    let read = |name: &str, attr: &str| {
        std::fs::read_to_string(sys_class_net.join(name).join(attr))
            .map(|s| s.trim().to_string())
            .ok()
    };
    std::fs::read_dir(sys_class_net)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name != "lo" && read(name, "type").as_deref() == Some(ARPHRD_ETHER))
        .filter_map(|name| Some((read(&name, "ifindex")?.parse::<u32>().ok()?, name)))
        .min()
        .map(|(_, name)| name)
}

/// `/etc/resolv.conf` naming the gateway (the NAT answers DNS), and
/// `/etc/hosts` with localhost. On a root disk either may be missing or a
/// symlink (e.g. to systemd-resolved's file, in a /run that has no such
/// thing): each becomes a plain file.
fn write_resolver_files(gateway: Ipv4Addr) {
    let etc = Path::new("/etc");
    let result = std::fs::create_dir_all(etc).and_then(|()| {
        replace_file(&etc.join("resolv.conf"), &format!("nameserver {gateway}\n"))?;
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if let Some(hosts) = hosts_with_localhost(&hosts) {
            replace_file(&etc.join("hosts"), &hosts)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        log(&format!(
            "network: cannot write /etc/resolv.conf or /etc/hosts: {e}"
        ));
    }
}

/// Makes `path` a plain file (mode 0644) holding `contents`, replacing
/// whatever is there, a symlink included (not its target): written beside
/// it, then renamed over it.
fn replace_file(path: &Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".starina-new");
    let temp = Path::new(&temp);
    std::fs::write(temp, contents)?;
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(temp, path)
}

/// `hosts` with a `127.0.0.1 localhost` line added, or `None` if it has
/// one already.
fn hosts_with_localhost(hosts: &str) -> Option<String> {
    let has_it = hosts.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        words.next() == Some("127.0.0.1") && words.any(|name| name == "localhost")
    });
    if has_it {
        return None;
    }
    let mut out = hosts.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("127.0.0.1 localhost\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(a: [u8; 4], prefix: u8, g: [u8; 4]) -> NetSpec {
        NetSpec {
            address: Ipv4Addr::from(a),
            prefix,
            gateway: Ipv4Addr::from(g),
        }
    }

    #[test]
    fn good_values() {
        let line = "console=hvc0 quiet starina.net=10.0.3.15/24,10.0.3.2 panic=1\n";
        assert_eq!(
            spec_from_cmdline(line),
            Ok(spec([10, 0, 3, 15], 24, [10, 0, 3, 2]))
        );
        assert_eq!(
            spec_from_cmdline("starina.net=192.168.7.2/30,192.168.7.1"),
            Ok(spec([192, 168, 7, 2], 30, [192, 168, 7, 1]))
        );
        assert_eq!(
            spec_from_cmdline("starina.net=10.1.2.3/8,10.200.0.1"),
            Ok(spec([10, 1, 2, 3], 8, [10, 200, 0, 1]))
        );
        // The first one counts.
        assert_eq!(
            spec_from_cmdline("starina.net=10.0.3.15/24,10.0.3.2 starina.net=bad"),
            Ok(spec([10, 0, 3, 15], 24, [10, 0, 3, 2]))
        );
    }

    #[test]
    fn netmasks() {
        assert_eq!(
            spec([10, 0, 3, 15], 24, [10, 0, 3, 2]).netmask(),
            Ipv4Addr::new(255, 255, 255, 0)
        );
        assert_eq!(
            spec([10, 0, 3, 15], 1, [10, 0, 3, 2]).netmask(),
            Ipv4Addr::new(128, 0, 0, 0)
        );
        assert_eq!(
            spec([10, 0, 3, 15], 31, [10, 0, 3, 14]).netmask(),
            Ipv4Addr::new(255, 255, 255, 254)
        );
    }

    #[test]
    fn missing_value() {
        assert_eq!(
            spec_from_cmdline("console=hvc0 quiet"),
            Err(SpecError::Missing)
        );
        assert_eq!(spec_from_cmdline(""), Err(SpecError::Missing));
        // Not the same parameter.
        assert_eq!(
            spec_from_cmdline("xstarina.net=10.0.3.15/24,10.0.3.2"),
            Err(SpecError::Missing)
        );
    }

    #[test]
    fn bad_values() {
        let cases = [
            ("", "no ,<gateway>"),
            ("10.0.3.15/24", "no ,<gateway>"),
            ("10.0.3.15,10.0.3.2", "no /<prefix>"),
            ("10.0.3/24,10.0.3.2", "the address is not IPv4"),
            ("fe80::1/64,fe80::2", "the address is not IPv4"),
            ("10.0.3.15/24,gateway", "the gateway is not IPv4"),
            ("10.0.3.15/24,", "the gateway is not IPv4"),
            ("10.0.3.15/x,10.0.3.2", "the prefix is not a number"),
            ("10.0.3.15/-1,10.0.3.2", "the prefix is not a number"),
            ("10.0.3.15/0,10.0.3.2", "the prefix is not 1 to 31"),
            ("10.0.3.15/32,10.0.3.2", "the prefix is not 1 to 31"),
            ("10.0.3.15/33,10.0.3.2", "the prefix is not 1 to 31"),
            (
                "0.0.0.0/24,10.0.3.2",
                "the address is not a unicast address",
            ),
            (
                "127.0.0.2/8,127.0.0.1",
                "the address is not a unicast address",
            ),
            (
                "224.0.0.1/24,224.0.0.2",
                "the address is not a unicast address",
            ),
            (
                "10.0.3.15/24,10.0.3.15",
                "the gateway is not another unicast address",
            ),
            (
                "10.0.3.15/24,255.255.255.255",
                "the gateway is not another unicast address",
            ),
            (
                "10.0.3.15/24,10.0.4.2",
                "the gateway is not on the guest's subnet",
            ),
        ];
        for (value, why) in cases {
            let got = spec_from_cmdline(&format!("quiet starina.net={value}"));
            assert_eq!(
                got,
                Err(SpecError::Bad {
                    value: value.to_string(),
                    why
                }),
                "{value}"
            );
        }
        let msg = spec_from_cmdline("starina.net=10.0.3.15")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"10.0.3.15\"") && msg.contains("<ip>/<prefix>,<gateway>"),
            "{msg}"
        );
    }

    #[test]
    fn resolver_files_replace_missing_files_and_symlinks() {
        let dir = std::env::temp_dir().join(format!("starina-net-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.conf");
        replace_file(&missing, "nameserver 10.0.3.2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&missing).unwrap(),
            "nameserver 10.0.3.2\n"
        );
        // A dangling symlink (systemd-resolved's, with no /run/systemd).
        let link = dir.join("resolv.conf");
        std::os::unix::fs::symlink(dir.join("no/such/dir/stub-resolv.conf"), &link).unwrap();
        replace_file(&link, "nameserver 10.0.3.2\n").unwrap();
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(
            std::fs::read_to_string(&link).unwrap(),
            "nameserver 10.0.3.2\n"
        );
        // A symlink to a real file: the link is replaced, its target kept.
        let target = dir.join("target");
        std::fs::write(&target, "old\n").unwrap();
        let link2 = dir.join("hosts");
        std::os::unix::fs::symlink(&target, &link2).unwrap();
        replace_file(&link2, "127.0.0.1 localhost\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(
            std::fs::read_to_string(&link2).unwrap(),
            "127.0.0.1 localhost\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hosts_file() {
        assert_eq!(
            hosts_with_localhost("").as_deref(),
            Some("127.0.0.1 localhost\n")
        );
        assert_eq!(
            hosts_with_localhost("10.0.3.2 gw").as_deref(),
            Some("10.0.3.2 gw\n127.0.0.1 localhost\n")
        );
        assert_eq!(
            hosts_with_localhost("127.0.0.1\tlocalhost.localdomain localhost\n"),
            None
        );
        // Commented out, or another address: not there.
        assert!(hosts_with_localhost("# 127.0.0.1 localhost\n").is_some());
        assert!(hosts_with_localhost("127.0.1.1 localhost\n").is_some());
    }

    #[test]
    fn first_ethernet_interface() {
        let dir = std::env::temp_dir().join(format!("agent-net-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, ty, index) in [
            ("lo", "772", "1"),
            ("sit0", "776", "2"),
            ("eth1", "1", "4"),
            ("eth0", "1", "3"),
        ] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("type"), format!("{ty}\n")).unwrap();
            std::fs::write(dir.join(name).join("ifindex"), format!("{index}\n")).unwrap();
        }
        assert_eq!(first_ethernet(&dir).as_deref(), Some("eth0"));
        std::fs::remove_dir_all(dir.join("eth0")).unwrap();
        std::fs::remove_dir_all(dir.join("eth1")).unwrap();
        assert_eq!(first_ethernet(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
