//! mDNS/DNS-SD discovery (mdns-sd), restricted to an explicit interface allow-list.
//!
//! [`MdnsDiscovery::start`] refuses an empty allow-list, then — before it
//! registers or browses anything — disables every interface in the mdns-sd
//! daemon and enables each listed one (the last matching rule wins), and
//! IPv6 too unless `ipv6` is set. Records are browsed as `_stocksync._udp.local.`
//! and go through the shared [`PeerTable`]. Address changes on the host are
//! re-announced by mdns-sd (its address check runs every few seconds) and
//! arrive at peers as `Updated` events; [`Discovery::shutdown`] (or drop)
//! unregisters, which sends goodbyes.
//!
//! Caveat (mdns-sd 0.21): the daemon thread joins the mDNS group on every
//! interface when it starts, before the allow-list command reaches it, and
//! leaves the disallowed ones a moment later. See docs/discovery.md.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, Receiver, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo};
use tracing::{debug, info, info_span, warn, Span};

use super::{
    record, Announcement, Discovery, DiscoveryError, DiscoveryEvent, DiscoveryStats, PeerTable,
    DEFAULT_MAX_PEERS, SERVICE_TYPE,
};
use crate::fleet::FleetId;
use crate::model::NodeId;

/// How long shutdown waits for the daemon to confirm each step.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Longest interface name (Linux `IFNAMSIZ` less the terminating zero).
const MAX_IFNAME: usize = 15;

/// What mDNS discovery is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdnsConfig {
    /// Interfaces to announce and browse on, by name. Empty: refuse to start.
    pub interfaces: Vec<String>,
    /// Also use IPv6 on those interfaces (off: IPv4 only, more deterministic).
    pub ipv6: bool,
    /// Most peers tracked.
    pub max_peers: usize,
    /// Refuse to start when the process is in this network namespace, as
    /// [`current_netns`] names it (test harnesses pass the namespace they were
    /// launched from, so mDNS can only run in namespaces they created).
    pub refuse_netns: Option<String>,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            ipv6: false,
            max_peers: DEFAULT_MAX_PEERS,
            refuse_netns: None,
        }
    }
}

/// The network namespace this process runs in, e.g. `net:[4026531833]` (Linux).
pub fn current_netns() -> std::io::Result<String> {
    Ok(std::fs::read_link("/proc/self/ns/net")?
        .to_string_lossy()
        .into_owned())
}

fn check_interfaces(names: &[String]) -> Result<(), DiscoveryError> {
    if names.is_empty() {
        return Err(DiscoveryError::NoInterfaces);
    }
    for n in names {
        let ok = !n.is_empty()
            && n.len() <= MAX_IFNAME
            && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !ok {
            return Err(DiscoveryError::BadInterface(n.clone()));
        }
    }
    Ok(())
}

fn mdns_err(e: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Mdns(e.to_string())
}

/// A resolved address as a dialable socket address (link-local IPv6 scoped).
fn socket_addr(ip: &ScopedIp, port: u16, ipv6: bool) -> Option<SocketAddr> {
    match ip {
        ScopedIp::V4(v4) => Some(SocketAddr::new(IpAddr::V4(*v4.addr()), port)),
        ScopedIp::V6(v6) if ipv6 => {
            let scope = if v6.addr().is_unicast_link_local() {
                v6.scope_id().index
            } else {
                0
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                *v6.addr(),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    }
}

/// mDNS discovery on the allowed interfaces.
pub struct MdnsDiscovery {
    daemon: ServiceDaemon,
    browse: Receiver<ServiceEvent>,
    monitor: Receiver<DaemonEvent>,
    cfg: MdnsConfig,
    table: PeerTable,
    by_fullname: HashMap<String, NodeId>,
    registered: Option<(String, Announcement)>,
    pending: VecDeque<DiscoveryEvent>,
    span: Span,
    shut: bool,
}

impl MdnsDiscovery {
    /// Starts browsing for node `me` of `fleet`, on `cfg.interfaces` only.
    pub fn start(me: NodeId, fleet: FleetId, cfg: &MdnsConfig) -> Result<Self, DiscoveryError> {
        let span = info_span!("discovery", node = %me, source = "mdns");
        let _enter = span.enter();
        check_interfaces(&cfg.interfaces)?;
        if let Some(refused) = &cfg.refuse_netns {
            let here = current_netns().map_err(DiscoveryError::NetnsUnknown)?;
            if here == *refused {
                return Err(DiscoveryError::RefusedNetns(here));
            }
        }
        let daemon = ServiceDaemon::new().map_err(mdns_err)?;
        // Commands run in order: the selection is in force before any register or browse.
        let setup = || -> Result<_, mdns_sd::Error> {
            daemon.disable_interface(IfKind::All)?;
            let names: Vec<IfKind> = cfg.interfaces.iter().map(IfKind::from).collect();
            daemon.enable_interface(names)?;
            if !cfg.ipv6 {
                daemon.disable_interface(IfKind::IPv6)?;
            }
            Ok((daemon.monitor()?, daemon.browse(SERVICE_TYPE)?))
        };
        let (monitor, browse) = match setup() {
            Ok(r) => r,
            Err(e) => {
                // The daemon thread holds its own command sender: stop it explicitly.
                if let Err(e) = daemon.shutdown() {
                    debug!(error = %e, "mDNS: shutdown after a failed start failed");
                }
                return Err(mdns_err(e));
            }
        };
        info!(interfaces = ?cfg.interfaces, ipv6 = cfg.ipv6, "mDNS discovery started");
        drop(_enter);
        Ok(Self {
            daemon,
            browse,
            monitor,
            cfg: cfg.clone(),
            table: PeerTable::new(me, fleet, cfg.max_peers),
            by_fullname: HashMap::new(),
            registered: None,
            pending: VecDeque::new(),
            span,
            shut: false,
        })
    }

    /// Waits up to `timeout` for the next event.
    pub fn wait_event(&mut self, timeout: Duration) -> Option<DiscoveryEvent> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.poll_event() {
                return Some(e);
            }
            if self.shut {
                return None;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            match self
                .browse
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(ev) => self.handle(ev),
                Err(mdns_sd::RecvTimeoutError::Timeout) => {}
                Err(mdns_sd::RecvTimeoutError::Disconnected) => {
                    self.rebrowse();
                    return None;
                }
            }
        }
    }

    fn handle(&mut self, ev: ServiceEvent) {
        let _enter = self.span.enter();
        match ev {
            ServiceEvent::ServiceResolved(r) => {
                if r.ty_domain != SERVICE_TYPE {
                    return;
                }
                let parsed = record::decode(|key| r.get_property_val(key).flatten());
                if let Ok(claim) = &parsed {
                    if let Some(old) = self.by_fullname.get(&r.fullname).copied() {
                        if old != claim.node {
                            self.by_fullname.remove(&r.fullname);
                            self.pending.extend(self.table.remove(&old));
                        }
                    }
                }
                let node = parsed.as_ref().ok().map(|c| c.node);
                let port = r.port;
                let ipv6 = self.cfg.ipv6;
                let addrs: Vec<SocketAddr> = r
                    .addresses
                    .iter()
                    .filter_map(|ip| socket_addr(ip, port, ipv6))
                    .collect();
                let event = self.table.observe(parsed, addrs);
                if let Some(node) = node {
                    if self.table.get(&node).is_some() {
                        self.by_fullname.insert(r.fullname.clone(), node);
                    }
                }
                self.pending.extend(event);
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some(node) = self.by_fullname.remove(&fullname) {
                    self.pending.extend(self.table.remove(&node));
                }
            }
            other => debug!(event = ?other, "mDNS browse event"),
        }
    }

    /// mdns-sd ends a subscription whose channel filled up: subscribe again
    /// (answers to the new query refresh what was missed).
    fn rebrowse(&mut self) {
        let _enter = self.span.enter();
        match self.daemon.browse(SERVICE_TYPE) {
            Ok(rx) => {
                warn!(
                    "mDNS: browse subscription ended (events not read fast enough); browsing again"
                );
                self.browse = rx;
            }
            Err(e) => {
                // The daemon is gone: report nothing more rather than retry on every poll.
                warn!(error = %e, "mDNS: cannot browse again; discovery stops");
                self.shut = true;
            }
        }
    }

    fn drain_monitor(&mut self) {
        while let Ok(ev) = self.monitor.try_recv() {
            let _enter = self.span.enter();
            match ev {
                DaemonEvent::Error(e) => warn!(error = %e, "mDNS daemon error"),
                DaemonEvent::IpAdd(ip) | DaemonEvent::IpDel(ip) => {
                    debug!(%ip, "mDNS: host address changed (re-announced by the daemon)")
                }
                other => debug!(event = ?other, "mDNS daemon event"),
            }
        }
    }

    fn unregister(&mut self) {
        if let Some((fullname, _)) = self.registered.take() {
            match self.daemon.unregister(&fullname) {
                Ok(rx) => {
                    if let Err(e) = rx.recv_timeout(SHUTDOWN_WAIT) {
                        debug!(error = %e, "mDNS: no unregister confirmation");
                    }
                }
                Err(e) => warn!(error = %e, "mDNS: unregister failed"),
            }
        }
    }
}

impl Discovery for MdnsDiscovery {
    fn announce(&mut self, a: &Announcement) -> Result<(), DiscoveryError> {
        if self.shut {
            return Err(DiscoveryError::Shutdown);
        }
        if self.registered.as_ref().is_some_and(|(_, old)| old == a) {
            return Ok(());
        }
        self.unregister();
        let _enter = self.span.enter();
        let instance = record::instance_name(&a.node);
        let host = format!("{instance}.local.");
        let txt = record::encode(a);
        let mut info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", a.port, &txt[..])
            .map_err(mdns_err)?
            .enable_addr_auto();
        info.set_interfaces(self.cfg.interfaces.iter().map(IfKind::from).collect());
        let fullname = info.get_fullname().to_string();
        self.daemon.register(info).map_err(mdns_err)?;
        info!(port = a.port, location = %a.location, role = a.role.as_str(), "mDNS: announcing");
        self.registered = Some((fullname, a.clone()));
        Ok(())
    }

    fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        self.drain_monitor();
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.shut {
                return None;
            }
            match self.browse.try_recv() {
                Ok(ev) => self.handle(ev),
                Err(mdns_sd::TryRecvError::Empty) => return None,
                Err(mdns_sd::TryRecvError::Disconnected) => {
                    self.rebrowse();
                    return None;
                }
            }
        }
    }

    fn stats(&self) -> DiscoveryStats {
        self.table.stats()
    }

    fn shutdown(&mut self) -> Result<(), DiscoveryError> {
        if std::mem::replace(&mut self.shut, true) {
            return Ok(());
        }
        self.unregister();
        let _enter = self.span.enter();
        if let Err(e) = self.daemon.stop_browse(SERVICE_TYPE) {
            debug!(error = %e, "mDNS: stop_browse failed");
        }
        self.pending.clear();
        let rx = self.daemon.shutdown().map_err(mdns_err)?;
        if let Err(e) = rx.recv_timeout(SHUTDOWN_WAIT) {
            debug!(error = %e, "mDNS: no shutdown confirmation");
        }
        info!("mDNS discovery stopped");
        Ok(())
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            debug!(error = %e, "mDNS: shutdown on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // These tests never create a daemon: mDNS must not run in the initial namespace.

    #[test]
    fn an_empty_or_bad_allow_list_is_refused_before_any_daemon() {
        let cfg = MdnsConfig::default();
        assert!(matches!(
            MdnsDiscovery::start(NodeId([1; 32]), FleetId([2; 32]), &cfg),
            Err(DiscoveryError::NoInterfaces)
        ));
        for bad in ["", "a/b", "eth0:1", "way-too-long-name0", "a b"] {
            assert!(matches!(
                check_interfaces(&[bad.to_string()]),
                Err(DiscoveryError::BadInterface(_))
            ));
        }
        check_interfaces(&["eth0".into(), "br-lan".into()]).unwrap();
    }

    #[test]
    fn the_namespace_guard_refuses_before_any_daemon() {
        let here = current_netns().unwrap();
        assert!(here.starts_with("net:["), "{here}");
        let cfg = MdnsConfig {
            interfaces: vec!["lo".into()],
            refuse_netns: Some(here),
            ..MdnsConfig::default()
        };
        assert!(matches!(
            MdnsDiscovery::start(NodeId([1; 32]), FleetId([2; 32]), &cfg),
            Err(DiscoveryError::RefusedNetns(_))
        ));
    }

    #[test]
    fn link_local_addresses_keep_their_scope() {
        let v4 = ScopedIp::from(IpAddr::from([10, 77, 0, 2]));
        assert_eq!(
            socket_addr(&v4, 7401, false),
            Some("10.77.0.2:7401".parse().unwrap())
        );
        let v6 = ScopedIp::from(IpAddr::from([0xfe80u16, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(socket_addr(&v6, 7401, false), None);
        assert!(socket_addr(&v6, 7401, true).is_some());
    }
}
