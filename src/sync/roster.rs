//! The roster exchange: a node sends its fleet roster on `PeerUp` and to a
//! peer whose digest shows an older version, and installs (then relays to
//! every other peer) a received roster that verifies under its fleet id and
//! is newer than its own. See docs/sync.md.

use super::engine::SyncEngine;
use super::io::{Effect, RejectReason};
use super::message::Message;
use crate::fleet::{InstallError, SignedRoster, SignedRosterError};
use crate::model::NodeId;
use crate::replica::Replica;

impl SyncEngine {
    /// Sends the replica's roster to `peer`, if it holds one. Unless `force`,
    /// the same version goes to the same peer at most once per
    /// `roster_resend_ms` (a peer that refuses it keeps showing an older one).
    pub(super) fn send_roster(
        &mut self,
        replica: &Replica,
        peer: NodeId,
        force: bool,
        out: &mut Vec<Effect>,
    ) {
        let (Some(signed), version) = (replica.signed_roster(), replica.roster_version()) else {
            return;
        };
        let now = self.now_ms;
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let recent = p
            .roster_sent
            .is_some_and(|(v, at)| v == version && now < at + self.config.roster_resend_ms);
        if recent && !force {
            return;
        }
        let message = Message::Roster(signed.clone());
        self.send(peer, &message, out);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.roster_sent = Some((version, now));
        }
    }

    /// Sends the replica's roster to every peer (it was just installed).
    pub(super) fn spread_roster(
        &mut self,
        replica: &Replica,
        except: Option<NodeId>,
        out: &mut Vec<Effect>,
    ) {
        for peer in self.peer_ids() {
            if Some(peer) != except {
                self.send_roster(replica, peer, true, out);
            }
        }
    }

    /// A roster from `from`: installed and relayed if it verifies under the
    /// node's fleet id and is newer; an older or equal version is ignored; one
    /// that does not verify is refused (`ForeignRoster`). In open mode the node
    /// has no fleet id to verify against and ignores every roster.
    ///
    /// Bounded: the message is at most `MAX_MESSAGE`, and a body over
    /// `MAX_ROSTER_BYTES` is refused before its signature is checked.
    pub(super) fn receive_roster(
        &mut self,
        replica: &mut Replica,
        from: NodeId,
        signed: SignedRoster,
        out: &mut Vec<Effect>,
    ) {
        let verified = match replica.check_roster(&signed) {
            Ok(v) => v,
            Err(InstallError::OpenMode | InstallError::NotNewer { .. }) => return,
            Err(InstallError::Invalid(e)) => {
                let reason = match e {
                    SignedRosterError::TooLarge { .. } | SignedRosterError::Malformed(_) => {
                        RejectReason::Malformed(e.to_string())
                    }
                    other => RejectReason::ForeignRoster(other.to_string()),
                };
                return self.reject(from, None, reason, out);
            }
        };
        let version = verified.version();
        // `check_roster` just checked what `install_roster` checks again.
        if replica.install_roster(verified.clone()).is_err() {
            return;
        }
        out.push(Effect::PersistRoster(verified));
        self.forget_refusals();
        if let Some(p) = self.peers.get_mut(&from) {
            p.roster_sent = Some((version, self.now_ms));
        }
        self.spread_roster(replica, Some(from), out);
    }
}
