//! Untrusted bytes: decoding and the node never panic, whatever arrives; what
//! does not decode, or does not verify, is reported as refused and changes
//! nothing.

use std::sync::Arc;

use proptest::prelude::*;
use stocksync::identity::Identity;
use stocksync::model::{LocationId, NodeId, NodeMeta, Role};
use stocksync::node::{Node, NodeOptions};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::{RejectReason, SyncEvent};

fn node(seed: u8) -> Node {
    let identity = Identity::from_seed([seed; 32]);
    let meta = NodeMeta {
        id: identity.node_id(),
        name: "n".into(),
        location: LocationId::new("S1").unwrap(),
        role: Role::Till,
    };
    Node::start(
        identity,
        meta,
        MemoryStore::new(),
        NodeOptions::default(),
        Arc::new(|| 0),
    )
    .unwrap()
}

fn rejections(n: &Node) -> Vec<(Option<NodeId>, RejectReason)> {
    n.take_events()
        .into_iter()
        .filter_map(|e| match e {
            SyncEvent::Rejected { writer, reason, .. } => Some((writer, reason)),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_and_what_does_not_decode_is_reported(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        header in prop_oneof![Just(vec![]), Just(vec![1u8, 0]), Just(vec![1u8, 1])],
    ) {
        // Half the cases carry a valid version byte, so the body decoder is reached.
        let bytes = [header, body].concat();
        let decoded = message::decode(&bytes);
        let n = node(1);
        let peer = Identity::from_seed([2; 32]).node_id();
        n.peer_up(peer).unwrap();
        n.take_sends();
        n.receive(peer, bytes);
        let refused = rejections(&n);
        // Random bytes that happen to decode are a message: handled, maybe refused
        // for their content, never applied.
        if decoded.is_err() {
            prop_assert_eq!(refused.len(), 1, "undecodable bytes must be reported once");
            prop_assert!(matches!(refused[0], (None, RejectReason::Malformed(_))));
        }
        prop_assert!(n.query(|r| r.heads().get(&peer).is_none()).unwrap(), "garbage was applied");
    }

    #[test]
    fn random_bundles_are_refused_without_panic(
        changes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
        first_seq in 1u64..1_000,
        epoch in any::<u32>(),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let n = node(1);
        let peer = Identity::from_seed([2; 32]).node_id();
        n.peer_up(peer).unwrap();
        let bundle = Bundle {
            writer: peer,
            epoch,
            first_seq,
            changes: changes.into_iter().map(ChangeBytes).collect(),
            signature: HeadSignature(sig),
        };
        n.receive(peer, message::encode(&Message::Changes(bundle)));
        let refused = rejections(&n);
        prop_assert_eq!(refused.len(), 1, "a random bundle must be reported: {:?}", refused);
        prop_assert_eq!(refused[0].0, Some(peer));
        prop_assert!(n.query(|r| r.heads().get(&peer).is_none()).unwrap());
    }
}
