//! Untrusted bytes: decoding and the engine never panic, whatever arrives.

use std::sync::Arc;

use proptest::prelude::*;
use stocksync::identity::Identity;
use stocksync::model::{LocationId, NodeMeta, Role};
use stocksync::node::{NodeOptions, Writer};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::{Effect, Input, SyncConfig, SyncEngine, SyncEvent};

fn writer(seed: u8) -> (Writer, SyncEngine) {
    let identity = Identity::from_seed([seed; 32]);
    let meta = NodeMeta {
        id: identity.node_id(),
        name: "n".into(),
        location: LocationId::new("S1").unwrap(),
        role: Role::Till,
    };
    let w = Writer::new(
        meta,
        Box::new(MemoryStore::new()),
        &NodeOptions::default(),
        Arc::new(|| 0),
    )
    .unwrap();
    (w, SyncEngine::new(identity, SyncConfig::default()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        header in prop_oneof![Just(vec![]), Just(vec![1u8, 0]), Just(vec![1u8, 1])],
    ) {
        // Half the cases carry a valid version byte, so the body decoder is reached.
        let bytes = [header, body].concat();
        let _ = message::decode(&bytes);
        let (mut w, mut e) = writer(1);
        let peer = Identity::from_seed([2; 32]).node_id();
        w.sync(&mut e, 0, Input::PeerUp(peer));
        let effects = w.sync(&mut e, 1, Input::Received { from: peer, message: bytes });
        // Anything that is not a valid message is reported, never applied.
        let applied = effects.iter().any(|e| matches!(e, Effect::Report(SyncEvent::Applied { .. })));
        prop_assert!(!applied, "garbage was applied");
    }

    #[test]
    fn random_bundles_are_refused_without_panic(
        changes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
        first_seq in any::<u64>(),
        epoch in any::<u32>(),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let (mut w, mut e) = writer(1);
        let peer = Identity::from_seed([2; 32]).node_id();
        w.sync(&mut e, 0, Input::PeerUp(peer));
        let bundle = Bundle {
            writer: peer,
            epoch,
            first_seq,
            changes: changes.into_iter().map(ChangeBytes).collect(),
            signature: HeadSignature(sig),
        };
        let bytes = message::encode(&Message::Changes(bundle));
        let effects = w.sync(&mut e, 1, Input::Received { from: peer, message: bytes });
        let applied = effects.iter().any(|e| matches!(e, Effect::Report(SyncEvent::Applied { .. })));
        prop_assert!(!applied, "garbage was applied");
        prop_assert!(w.replica().unwrap().heads().get(&peer).is_none());
    }
}
