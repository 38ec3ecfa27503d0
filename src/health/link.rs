//! `interface` and `address` probes: is a link up, is the anycast service
//! address configured (on its interface). Both ask the kernel over
//! rtnetlink ([`super::netlink`]) on every probe, and [`watch`] listens to
//! the kernel's link and address notifications so that a link going down
//! or an address being removed wakes the check at once instead of at its
//! next interval.
//!
//! The verdicts ([`link_verdict`], [`address_verdict`]) and the event
//! filter ([`Interest::relevant`]) are pure. This module decides nothing
//! beyond one probe's success: rise/fall belong to the core.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::netlink::{
    self, Addr, Link, Msg, IFA_F_DADFAILED, IFA_F_TENTATIVE, IFF_RUNNING, IFF_UP,
};
use super::Probed;

/// A prepared `interface` check.
#[derive(Debug)]
pub struct InterfaceTarget {
    pub name: String,
}

impl InterfaceTarget {
    /// Details: `eth0 up`, `eth0 down`, `eth0 up, no carrier`,
    /// `eth0 not found`.
    pub async fn probe(&self) -> Probed {
        let link = netlink::get_link(&self.name)
            .await
            .map_err(|e| format!("netlink: {e}"))?;
        link_verdict(&self.name, link.as_ref())
    }

    /// What wakes this check.
    pub fn interest(&self) -> Interest {
        Interest {
            interface: Some(self.name.clone()),
            addr: None,
        }
    }
}

/// A link is healthy when it is administratively up (`IFF_UP`) and
/// operationally up (`IFF_RUNNING`: carrier present, lower layer up).
pub fn link_verdict(name: &str, link: Option<&Link>) -> Probed {
    match link {
        None => Err(format!("{name} not found")),
        Some(l) if l.flags & IFF_UP == 0 => Err(format!("{name} down")),
        Some(l) if l.flags & IFF_RUNNING == 0 => Err(format!("{name} up, no carrier")),
        Some(_) => Ok(format!("{name} up")),
    }
}

/// A prepared `address` check.
#[derive(Debug)]
pub struct AddressTarget {
    pub addr: IpAddr,
    /// The interface the address must be on; any interface if `None`.
    pub interface: Option<String>,
}

impl AddressTarget {
    /// Details: `203.0.113.10 on lo`, `203.0.113.10 not on lo`,
    /// `2001:db8::10 on lo tentative (duplicate address detection)`.
    pub async fn probe(&self) -> Probed {
        let on = match &self.interface {
            None => None,
            Some(name) => match netlink::get_link(name).await {
                Ok(Some(l)) => Some((name.as_str(), l.index)),
                Ok(None) => return Err(format!("{} not on {name}: {name} not found", self.addr)),
                Err(e) => return Err(format!("netlink: {e}")),
            },
        };
        let addrs = netlink::dump_addrs(self.addr.is_ipv6())
            .await
            .map_err(|e| format!("netlink: {e}"))?;
        address_verdict(self.addr, on, &addrs)
    }

    /// What wakes this check.
    pub fn interest(&self) -> Interest {
        Interest {
            interface: self.interface.clone(),
            addr: Some(self.addr),
        }
    }
}

/// The address is healthy when it is configured (on interface `on`:
/// name and index, if given) and usable: not tentative, DAD not failed.
pub fn address_verdict(addr: IpAddr, on: Option<(&str, u32)>, addrs: &[Addr]) -> Probed {
    let found = addrs
        .iter()
        .find(|a| a.addr == addr && on.is_none_or(|(_, index)| a.index == index));
    let place = match on {
        Some((name, _)) => format!("on {name}"),
        None => "configured".to_string(),
    };
    match found {
        None => Err(match on {
            Some((name, _)) => format!("{addr} not on {name}"),
            None => format!("{addr} not configured"),
        }),
        Some(a) if a.flags & IFA_F_DADFAILED != 0 => {
            Err(format!("{addr} {place}: duplicate address detected"))
        }
        Some(a) if a.flags & IFA_F_TENTATIVE != 0 => Err(format!(
            "{addr} {place} tentative (duplicate address detection)"
        )),
        Some(_) => Ok(format!("{addr} {place}")),
    }
}

/// Which kernel notifications concern a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    /// Link changes of this interface.
    pub interface: Option<String>,
    /// Changes of this address.
    pub addr: Option<IpAddr>,
}

impl Interest {
    /// The multicast groups to join.
    fn groups(&self) -> u32 {
        let link = if self.interface.is_some() {
            netlink::GROUP_LINK
        } else {
            0
        };
        let addr = match self.addr {
            None => 0,
            Some(IpAddr::V4(_)) => netlink::GROUP_IPV4_ADDR,
            Some(IpAddr::V6(_)) => netlink::GROUP_IPV6_ADDR,
        };
        link | addr
    }

    /// True if `msg` may change this check's result. `index` is the last
    /// known index of the interface (learned from link messages with its
    /// name), so a rename away from the name also counts. Lost
    /// notifications always count.
    pub fn relevant(&self, index: &mut Option<u32>, msg: &Msg) -> bool {
        match msg {
            Msg::Overrun => true,
            Msg::NewLink(l) | Msg::DelLink(l) => {
                let Some(name) = &self.interface else {
                    return false;
                };
                let named = l.name.as_deref() == Some(name.as_str());
                let was = *index == Some(l.index);
                if named {
                    *index = match msg {
                        Msg::DelLink(_) => None,
                        _ => Some(l.index),
                    };
                } else if was {
                    *index = None; // renamed away
                }
                named || was
            }
            Msg::NewAddr(a) | Msg::DelAddr(a) => self.addr == Some(a.addr),
            Msg::Done | Msg::Error(_) | Msg::Other(_) => false,
        }
    }
}

/// Listens to this namespace's link and address notifications and calls
/// `wake.notify_one()` for every one that concerns `interest`, and each
/// time the listener is (re)armed (the state may have changed while
/// nothing listened). If the netlink socket fails it is reopened every
/// `retry`; meanwhile the check runs on its interval. Runs until
/// cancelled.
pub async fn watch(interest: Interest, wake: Arc<Notify>, retry: Duration) {
    let mut warned = false;
    loop {
        let err = match netlink::Socket::open(interest.groups()) {
            Err(e) => e,
            Ok(sock) => {
                let mut index = match &interest.interface {
                    Some(name) => netlink::get_link(name)
                        .await
                        .ok()
                        .flatten()
                        .map(|l| l.index),
                    None => None,
                };
                tracing::debug!(?interest, "netlink listener armed");
                warned = false;
                wake.notify_one();
                loop {
                    match sock.recv().await {
                        Ok(msgs) => {
                            // Every message updates the index; wake once.
                            let mut hit = false;
                            for r in &msgs {
                                hit |= interest.relevant(&mut index, &r.msg);
                            }
                            if hit {
                                wake.notify_one();
                            }
                        }
                        Err(e) => break e,
                    }
                }
            }
        };
        if warned {
            tracing::debug!(error = %err, "netlink listener still failing");
        } else {
            tracing::warn!(error = %err, "netlink listener failed; the check falls back to its interval until it is reopened");
            warned = true;
        }
        wake.notify_one();
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, flags: u32) -> Link {
        Link {
            index,
            name: Some(name.into()),
            flags,
        }
    }

    fn addr(index: u32, a: &str, flags: u32) -> Addr {
        Addr {
            index,
            addr: a.parse().unwrap(),
            prefix_len: 32,
            flags,
        }
    }

    #[test]
    fn links_need_admin_up_and_carrier() {
        assert_eq!(link_verdict("eth0", None), Err("eth0 not found".into()));
        let l = link(2, "eth0", 0);
        assert_eq!(link_verdict("eth0", Some(&l)), Err("eth0 down".into()));
        let l = link(2, "eth0", IFF_UP);
        assert_eq!(
            link_verdict("eth0", Some(&l)),
            Err("eth0 up, no carrier".into())
        );
        let l = link(2, "eth0", IFF_UP | IFF_RUNNING);
        assert_eq!(link_verdict("eth0", Some(&l)), Ok("eth0 up".into()));
    }

    #[test]
    fn address_must_be_on_its_interface_and_usable() {
        let vip: IpAddr = "203.0.113.10".parse().unwrap();
        let addrs = vec![addr(1, "127.0.0.1", 0), addr(3, "203.0.113.10", 0)];
        assert_eq!(
            address_verdict(vip, None, &addrs),
            Ok("203.0.113.10 configured".into())
        );
        assert_eq!(
            address_verdict(vip, Some(("eth1", 3)), &addrs),
            Ok("203.0.113.10 on eth1".into())
        );
        assert_eq!(
            address_verdict(vip, Some(("lo", 1)), &addrs),
            Err("203.0.113.10 not on lo".into())
        );
        assert_eq!(
            address_verdict(vip, None, &addrs[..1]),
            Err("203.0.113.10 not configured".into())
        );
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let t = [addr(1, "2001:db8::10", IFA_F_TENTATIVE)];
        assert_eq!(
            address_verdict(v6, Some(("lo", 1)), &t),
            Err("2001:db8::10 on lo tentative (duplicate address detection)".into())
        );
        let d = [addr(1, "2001:db8::10", IFA_F_DADFAILED | IFA_F_TENTATIVE)];
        assert_eq!(
            address_verdict(v6, None, &d),
            Err("2001:db8::10 configured: duplicate address detected".into())
        );
    }

    #[test]
    fn relevant_follows_the_name_and_the_index() {
        let i = Interest {
            interface: Some("eth0".into()),
            addr: None,
        };
        let mut index = None;
        assert!(!i.relevant(&mut index, &Msg::NewLink(link(5, "eth1", 0))));
        assert!(i.relevant(&mut index, &Msg::NewLink(link(3, "eth0", IFF_UP))));
        assert_eq!(index, Some(3));
        // Renamed away: the old index still matters once.
        assert!(i.relevant(&mut index, &Msg::NewLink(link(3, "wan", IFF_UP))));
        assert_eq!(index, None);
        assert!(!i.relevant(&mut index, &Msg::NewLink(link(3, "wan", 0))));
        // Deleted and re-created with another index.
        assert!(i.relevant(&mut index, &Msg::NewLink(link(7, "eth0", IFF_UP))));
        assert!(i.relevant(&mut index, &Msg::DelLink(link(7, "eth0", 0))));
        assert_eq!(index, None);
        // Addresses do not concern an interface check; lost events do.
        assert!(!i.relevant(&mut index, &Msg::DelAddr(addr(7, "192.0.2.1", 0))));
        assert!(i.relevant(&mut index, &Msg::Overrun));
        assert!(!i.relevant(&mut index, &Msg::Done));
    }

    #[test]
    fn relevant_for_an_address_is_that_address_and_its_interface() {
        let i = Interest {
            interface: Some("lo".into()),
            addr: Some("203.0.113.10".parse().unwrap()),
        };
        let mut index = Some(1);
        assert!(i.relevant(&mut index, &Msg::DelAddr(addr(1, "203.0.113.10", 0))));
        assert!(i.relevant(&mut index, &Msg::NewAddr(addr(4, "203.0.113.10", 0))));
        assert!(!i.relevant(&mut index, &Msg::DelAddr(addr(1, "203.0.113.11", 0))));
        assert!(i.relevant(&mut index, &Msg::NewLink(link(1, "lo", 0))));
        assert_eq!(i.groups(), netlink::GROUP_LINK | netlink::GROUP_IPV4_ADDR);
        let any = Interest {
            interface: None,
            addr: Some("2001:db8::10".parse().unwrap()),
        };
        assert!(!any.relevant(&mut None, &Msg::NewLink(link(1, "lo", 0))));
        assert_eq!(any.groups(), netlink::GROUP_IPV6_ADDR);
    }
}
