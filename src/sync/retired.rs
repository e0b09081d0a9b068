//! Reporting a revoked (retired) writer's changes after its revocation point:
//! refused like any revoked change, and what they spent reported
//! (`SyncEvent::RetiredNodeWrote`; see docs/escrow.md, "Retiring a node").

use super::bundle;
use super::engine::SyncEngine;
use super::io::{Effect, SyncEvent};
use super::message::Bundle;
use crate::model::{NodeId, Position};
use crate::replica::Replica;

impl SyncEngine {
    /// A bundle of revoked `writer` starting after its revocation point
    /// `after` was refused: if its signature holds (a forged bundle reports
    /// nothing), reports the positions and what the changes spent.
    pub(super) fn report_revoked_bundle(
        &mut self,
        replica: &Replica,
        from: NodeId,
        bundle: &Bundle,
        after: Position,
        out: &mut Vec<Effect>,
    ) {
        if let Ok((span, changes)) = bundle::verify(bundle) {
            self.report_revoked_changes(
                replica,
                from,
                bundle.writer,
                after,
                span.first,
                &changes,
                out,
            );
        }
    }

    /// Reports verified changes of revoked `writer` from `first` on, refused
    /// because they come after its revocation point `after`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn report_revoked_changes(
        &mut self,
        replica: &Replica,
        from: NodeId,
        writer: NodeId,
        after: Position,
        first: Position,
        changes: &[Vec<u8>],
        out: &mut Vec<Effect>,
    ) {
        let Some(n) = (changes.len() as u64).checked_sub(1) else {
            return;
        };
        let last = Position {
            epoch: first.epoch,
            seq: first.seq.saturating_add(n),
        };
        out.push(Effect::Report(SyncEvent::RetiredNodeWrote {
            from,
            writer,
            after,
            first,
            last,
            spent: replica.spending_beyond(&writer, changes),
        }));
    }
}
