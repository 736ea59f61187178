//! Network interface and route ioctls (`SIOCSIFADDR`, `SIOCSIFNETMASK`,
//! `SIOCGIFFLAGS`/`SIOCSIFFLAGS`, `SIOCGIFMTU`, `SIOCADDRT`) on an `AF_INET`
//! datagram socket: the few calls the agent needs to bring up its network
//! without busybox's `ip`.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;

/// The kernel's `struct rtentry` (include/uapi/linux/route.h). glibc's
/// headers have it but the `libc` crate only has it for musl, so it is
/// spelled out here, field for field.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// An `AF_INET` socket to issue interface ioctls on.
pub struct Control {
    fd: OwnedFd,
}

impl Control {
    pub fn open() -> io::Result<Control> {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Control { fd })
    }

    /// Sets IFF_UP on interface `name` (a no-op if it is up already).
    pub fn set_up(&self, name: &str) -> io::Result<()> {
        let mut req = ifreq(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    /// Gives interface `name` the IPv4 address `addr`.
    pub fn set_address(&self, name: &str, addr: Ipv4Addr) -> io::Result<()> {
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_addr = sockaddr(addr);
        self.ioctl(libc::SIOCSIFADDR, &mut req)
    }

    /// Sets the netmask of interface `name`'s address.
    pub fn set_netmask(&self, name: &str, mask: Ipv4Addr) -> io::Result<()> {
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_netmask = sockaddr(mask);
        self.ioctl(libc::SIOCSIFNETMASK, &mut req)
    }

    /// The MTU of interface `name`, as the kernel reports it.
    pub fn mtu(&self, name: &str) -> io::Result<u32> {
        let mut req = ifreq(name)?;
        self.ioctl(libc::SIOCGIFMTU, &mut req)?;
        // SAFETY: SIOCGIFMTU filled in the mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        Ok(mtu as u32)
    }

    /// Adds the default route via `gateway` through interface `name`.
    /// A default route that is already there is not an error.
    pub fn add_default_route(&self, name: &str, gateway: Ipv4Addr) -> io::Result<()> {
        let dev = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut route = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr(gateway),
            rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            // The kernel only reads the name (strncpy_from_user).
            rt_dev: dev.as_ptr().cast_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        // SAFETY: `route` is a complete struct rtentry whose rt_dev points
        // to a NUL-terminated name that outlives the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SIOCADDRT as _,
                &mut route as *mut RtEntry,
            )
        };
        match check(ret) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: `req` is a whole struct ifreq, the argument every
        // interface ioctl used here reads and writes; it outlives the call.
        let ret =
            unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, req as *mut libc::ifreq) };
        check(ret)
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A zeroed `ifreq` naming interface `name`.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain data (a name and a union of integers,
    // addresses and a pointer), for which all zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// `addr` as a generic `sockaddr` holding a `sockaddr_in`.
fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain data;
    // the kernel reads the address back as a sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}
