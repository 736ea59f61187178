//! Network configuration: the interface comes up when the driver announces
//! the link, and gets its address, gateway and DNS servers by DHCP.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::Config as IfaceConfig;
use smoltcp::iface::Interface;
use smoltcp::socket::dhcpv4;
use smoltcp::socket::dns;
use smoltcp::wire::EthernetAddress;
use smoltcp::wire::HardwareAddress;
use smoltcp::wire::IpAddress;
use smoltcp::wire::IpCidr;
use smoltcp::wire::Ipv4Address;
use smoltcp::wire::Ipv4Cidr;
use starina::timer::now_ns;

use crate::server::now;
use crate::server::Server;

impl Server {
    /// The driver announced the link: bring the interface up (once) and
    /// start DHCP.
    pub fn link_up(&mut self, mac: [u8; 6]) {
        if self.iface.is_some() {
            log::info!("network driver reconnected");
            return;
        }
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = now_ns();
        let iface = Interface::new(config, &mut self.link, now());
        self.iface = Some(iface);
        self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
        self.dns = Some(self.sockets.add(dns::Socket::new(&[], vec![])));
        log::info!("link up; asking for an address by DHCP");
    }

    /// Applies what DHCP reported since the last poll (a lease or its loss).
    pub fn dhcp_events(&mut self) {
        let (Some(dhcp), Some(iface)) = (self.dhcp, self.iface.as_mut()) else {
            return;
        };
        // Copy what the event says: it borrows the socket set.
        let configured = match self.sockets.get_mut::<dhcpv4::Socket>(dhcp).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(config)) => Some((
                config.address,
                config.router,
                config
                    .dns_servers
                    .iter()
                    .map(|s| IpAddress::Ipv4(*s))
                    .collect::<Vec<IpAddress>>(),
            )),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match configured {
            Some((address, router, servers)) => {
                iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(address));
                });
                if let Some(router) = router {
                    let _ = iface.routes_mut().add_default_ipv4_route(router);
                } else {
                    iface.routes_mut().remove_default_ipv4_route();
                }
                if let Some(dns) = self.dns {
                    self.sockets
                        .get_mut::<dns::Socket>(dns)
                        .update_servers(&servers);
                }
                self.dns_servers = servers
                    .iter()
                    .map(|s| match s {
                        IpAddress::Ipv4(v4) => *v4,
                    })
                    .collect();
                log::info!("{}", configured_text(address, router, &servers));
                self.configured = true;
            }
            None => {
                // smoltcp reports this once at start, before any lease.
                if self.configured {
                    log::warn!("DHCP lease lost");
                }
                iface.update_ip_addrs(|addrs| addrs.clear());
                iface.routes_mut().remove_default_ipv4_route();
                self.configured = false;
            }
        }
    }
}

/// The log line for a lease.
fn configured_text(address: Ipv4Cidr, router: Option<Ipv4Address>, dns: &[IpAddress]) -> String {
    let dns_text: Vec<String> = dns.iter().map(|s| format!("{s}")).collect();
    format!(
        "configured by DHCP: address {}, gateway {}, DNS {}",
        address,
        router.map_or("none".to_string(), |r| format!("{r}")),
        if dns_text.is_empty() {
            "none".to_string()
        } else {
            dns_text.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_lease() {
        let address = Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24);
        let gateway = Some(Ipv4Address::new(10, 0, 2, 2));
        let dns = [IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 3))];
        assert_eq!(
            configured_text(address, gateway, &dns),
            "configured by DHCP: address 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3"
        );
        assert_eq!(
            configured_text(address, None, &[]),
            "configured by DHCP: address 10.0.2.15/24, gateway none, DNS none"
        );
    }
}
