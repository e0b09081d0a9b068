//! The audit lines an own change's message carries, one per event: written by
//! [`super::Replica::seal`], read back when a node recovers its own history
//! from peers (see docs/escrow.md, "Own history seen ahead").

use serde::{Deserialize, Serialize};

use crate::model::{EventKind, Policy};

/// One line of the message an own change carries: the audit record of an
/// event and its first answer (what a journal row holds).
#[derive(Serialize)]
pub(super) struct AuditLine<'a> {
    pub(super) id: &'a str,
    #[serde(flatten)]
    pub(super) kind: &'a EventKind,
    pub(super) loc: &'a str,
    pub(super) sku: &'a str,
    pub(super) qty: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) r#ref: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) deficit: u64,
    /// The request's policy as the caller gave it (`None`: the kind's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) policy: Option<Policy>,
    /// The answer's `rights_after`.
    pub(super) rights: i64,
    /// The answer's `on_hand_after`.
    pub(super) on_hand: i64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An audit line as read back. Lines written before the answer was recorded
/// lack `policy`, `rights` and `on_hand`: `answered` is false for them.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditRecord {
    /// The event id.
    pub id: String,
    /// The event kind, with its fields.
    #[serde(flatten)]
    pub kind: EventKind,
    /// Location.
    pub loc: String,
    /// SKU.
    pub sku: String,
    /// Units.
    pub qty: u64,
    /// The caller's reference.
    #[serde(default)]
    pub r#ref: Option<String>,
    /// Units consumed beyond rights.
    #[serde(default)]
    pub deficit: u64,
    /// The request's policy as given.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The answer's `rights_after` (`None` on lines from before it was recorded).
    #[serde(default)]
    pub rights: Option<i64>,
    /// The answer's `on_hand_after` (idem).
    #[serde(default)]
    pub on_hand: Option<i64>,
}

/// An own change's message as read back.
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    events: Vec<AuditRecord>,
}

/// The audit lines of an own change's message (`{"epoch":E,"events":[...]}`).
pub(crate) fn parse(message: &str) -> Result<Vec<AuditRecord>, String> {
    serde_json::from_str::<Message>(message)
        .map(|m| m.events)
        .map_err(|e| format!("own change's audit lines do not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReservationId;

    #[test]
    fn lines_round_trip_and_old_lines_still_parse() {
        let kind = EventKind::Reserve {
            reservation: "R1".parse::<ReservationId>().unwrap(),
        };
        let line = AuditLine {
            id: "e1",
            kind: &kind,
            loc: "S",
            sku: "A",
            qty: 2,
            r#ref: Some("order 7"),
            deficit: 0,
            policy: Some(Policy::Strict),
            rights: 5,
            on_hand: 9,
        };
        let json = format!(
            "{{\"epoch\":1,\"events\":[{}]}}",
            serde_json::to_string(&line).unwrap()
        );
        let back = parse(&json).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].kind, kind);
        assert_eq!(back[0].rights, Some(5));
        assert_eq!(back[0].on_hand, Some(9));
        assert_eq!(back[0].policy, Some(Policy::Strict));
        assert_eq!(back[0].r#ref.as_deref(), Some("order 7"));
        // A line written before answers were recorded.
        let old = r#"{"epoch":1,"events":[{"id":"s1","kind":"sale","loc":"S","sku":"A","qty":1,"deficit":1}]}"#;
        let back = parse(old).unwrap();
        assert_eq!(back[0].kind, EventKind::Sale);
        assert_eq!(back[0].deficit, 1);
        assert_eq!(back[0].rights, None);
        // A snapshot change carries no events.
        assert!(parse(r#"{"epoch":2,"events":[]}"#).unwrap().is_empty());
    }
}
