//! An in-memory LAN that several nodes join: discovery for the simulator and tests.
//!
//! Records travel as the same TXT key/value pairs mDNS carries and go through
//! the same parsing and [`PeerTable`], so filtering and bounds behave as on a
//! real LAN. Like mDNS, a member hears its own announcements (and ignores them),
//! a member that joins hears the records already announced, and a goodbye is
//! delivered when a member shuts down or is dropped. A partitioned member
//! neither hears nor is heard; healing delivers the current records both ways.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::debug;

use super::{
    record, Announcement, Discovery, DiscoveryError, DiscoveryEvent, DiscoveryStats, PeerTable,
};
use crate::fleet::FleetId;
use crate::model::NodeId;

/// Most undelivered records queued for one member; older ones are dropped past it.
pub const MAX_INBOX: usize = 4096;

/// TXT pairs and the addresses they were announced from.
type Record = (Vec<(String, String)>, Vec<SocketAddr>);

/// A record as it travels on the memory LAN.
#[derive(Clone, Debug)]
enum Wire {
    Record {
        from: u64,
        txt: Vec<(String, String)>,
        addrs: Vec<SocketAddr>,
    },
    Goodbye {
        from: u64,
    },
}

#[derive(Debug, Default)]
struct Member {
    record: Option<Record>,
    inbox: VecDeque<Wire>,
    partitioned: bool,
    listening: bool,
}

#[derive(Debug, Default)]
struct LanState {
    members: BTreeMap<u64, Member>,
    next: u64,
}

impl LanState {
    fn record_of(&self, id: u64) -> Option<Wire> {
        let (txt, addrs) = self.members.get(&id)?.record.clone()?;
        Some(Wire::Record {
            from: id,
            txt,
            addrs,
        })
    }

    /// Delivers `wire` from `from` to every listening member it can reach (itself included).
    fn broadcast(&mut self, from: u64, wire: &Wire) {
        let sender_cut = self.members.get(&from).is_some_and(|m| m.partitioned);
        for (id, m) in self.members.iter_mut() {
            if !m.listening || (*id != from && (sender_cut || m.partitioned)) {
                continue;
            }
            if m.inbox.len() >= MAX_INBOX {
                m.inbox.pop_front();
                debug!(member = id, "memory LAN: inbox full, oldest record dropped");
            }
            m.inbox.push_back(wire.clone());
        }
    }

    /// Delivers every current record `to` can reach into its inbox.
    fn replay_to(&mut self, to: u64) {
        let ids: Vec<u64> = self.members.keys().copied().filter(|i| *i != to).collect();
        let cut = self.members.get(&to).is_some_and(|m| m.partitioned);
        for id in ids {
            let other_cut = self.members.get(&id).is_some_and(|m| m.partitioned);
            if cut || other_cut {
                continue;
            }
            if let Some(wire) = self.record_of(id) {
                if let Some(m) = self.members.get_mut(&to) {
                    m.inbox.push_back(wire);
                }
            }
        }
    }
}

/// A shared in-memory LAN; clones are handles to the same one.
#[derive(Clone, Debug, Default)]
pub struct MemoryLan {
    inner: Arc<Mutex<LanState>>,
}

impl MemoryLan {
    /// An empty LAN.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, LanState> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins node `me` of `fleet` at address `ip`, tracking at most `max_peers`.
    pub fn join(
        &self,
        ip: IpAddr,
        me: NodeId,
        fleet: FleetId,
        max_peers: usize,
    ) -> MemoryDiscovery {
        let mut lan = self.lock();
        lan.next += 1;
        let id = lan.next;
        lan.members.insert(
            id,
            Member {
                listening: true,
                ..Member::default()
            },
        );
        lan.replay_to(id);
        MemoryDiscovery {
            lan: self.clone(),
            member: id,
            ip,
            table: PeerTable::new(me, fleet, max_peers),
            by_member: HashMap::new(),
            pending: VecDeque::new(),
            shut: false,
        }
    }

    /// Puts raw TXT pairs on the LAN from a member that does not listen (a test
    /// double for hostile or broken announcers); returns its handle.
    pub fn inject(&self, txt: Vec<(String, String)>, addrs: Vec<SocketAddr>) -> u64 {
        let mut lan = self.lock();
        lan.next += 1;
        let id = lan.next;
        lan.members.insert(
            id,
            Member {
                record: Some((txt, addrs)),
                ..Member::default()
            },
        );
        if let Some(wire) = lan.record_of(id) {
            lan.broadcast(id, &wire);
        }
        id
    }

    /// Withdraws an injected record (a goodbye from it).
    pub fn withdraw(&self, handle: u64) {
        let mut lan = self.lock();
        if lan.members.contains_key(&handle) {
            lan.broadcast(handle, &Wire::Goodbye { from: handle });
            lan.members.remove(&handle);
        }
    }

    /// Cuts (`true`) or reconnects (`false`) `member`; reconnecting
    /// delivers the current records both ways, as re-announcements would.
    pub fn set_partitioned(&self, member: &MemoryDiscovery, cut: bool) {
        let mut lan = self.lock();
        let id = member.member;
        let was = match lan.members.get_mut(&id) {
            Some(m) => std::mem::replace(&mut m.partitioned, cut),
            None => return,
        };
        if was && !cut {
            lan.replay_to(id);
            if let Some(wire) = lan.record_of(id) {
                lan.broadcast(id, &wire);
            }
        }
    }

    /// How many members (joined or injected) are on the LAN.
    pub fn members(&self) -> usize {
        self.lock().members.len()
    }
}

/// One node's view of a [`MemoryLan`].
#[derive(Debug)]
pub struct MemoryDiscovery {
    lan: MemoryLan,
    member: u64,
    ip: IpAddr,
    table: PeerTable,
    by_member: HashMap<u64, NodeId>,
    pending: VecDeque<DiscoveryEvent>,
    shut: bool,
}

impl MemoryDiscovery {
    fn handle(&mut self, wire: Wire) {
        match wire {
            Wire::Record { from, txt, addrs } => {
                let parsed = record::decode_pairs(&txt);
                if let Ok(claim) = &parsed {
                    // A member now claiming another id: the old one is gone.
                    if let Some(old) = self.by_member.get(&from).copied() {
                        if old != claim.node {
                            self.by_member.remove(&from);
                            self.pending.extend(self.table.remove(&old));
                        }
                    }
                }
                let node = parsed.as_ref().ok().map(|c| c.node);
                let event = self.table.observe(parsed, addrs);
                if let Some(node) = node {
                    if self.table.get(&node).is_some() {
                        self.by_member.insert(from, node);
                    }
                }
                self.pending.extend(event);
            }
            Wire::Goodbye { from } => {
                if let Some(node) = self.by_member.remove(&from) {
                    self.pending.extend(self.table.remove(&node));
                }
            }
        }
    }
}

impl Discovery for MemoryDiscovery {
    fn announce(&mut self, a: &Announcement) -> Result<(), DiscoveryError> {
        if self.shut {
            return Err(DiscoveryError::Shutdown);
        }
        let txt = record::encode(a);
        let addrs = vec![SocketAddr::new(self.ip, a.port)];
        let mut lan = self.lan.lock();
        if let Some(m) = lan.members.get_mut(&self.member) {
            m.record = Some((txt, addrs));
        }
        if let Some(wire) = lan.record_of(self.member) {
            lan.broadcast(self.member, &wire);
        }
        Ok(())
    }

    fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.shut {
                return None;
            }
            let wire = {
                let mut lan = self.lan.lock();
                lan.members.get_mut(&self.member)?.inbox.pop_front()?
            };
            self.handle(wire);
        }
    }

    fn stats(&self) -> DiscoveryStats {
        self.table.stats()
    }

    fn shutdown(&mut self) -> Result<(), DiscoveryError> {
        if std::mem::replace(&mut self.shut, true) {
            return Ok(());
        }
        let mut lan = self.lan.lock();
        lan.broadcast(self.member, &Wire::Goodbye { from: self.member });
        lan.members.remove(&self.member);
        self.pending.clear();
        Ok(())
    }
}

impl Drop for MemoryDiscovery {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
