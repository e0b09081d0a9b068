//! The roster on SQLite: kept across a restart, never dropped into open mode,
//! never verified under another fleet; a node in open mode takes none.

use crate::harness::{at, loc, options};
use stocksync::fleet::{FleetAuthority, InstallError, Member};
use stocksync::model::{EventKind, NodeMeta, Role};
use stocksync::store::memory::MemoryStore;
use stocksync::{data_dir, system_clock, Identity, NodeError, SetupError, StoreError};

#[test]
fn a_node_on_sqlite_keeps_its_roster_across_a_restart_and_refuses_another_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let spec = stocksync::NodeSpec::parse("store-1", "S1", "store").unwrap();
    let meta = data_dir::init(dir.path(), &spec).unwrap();
    let authority = FleetAuthority::from_seed([42; 32]);
    let roster = authority
        .roster()
        .with_member(meta.id, Member::new("store-1", Role::Store, [loc("S1")]));
    let signed = authority.sign(&roster).unwrap();
    let open = |fleet| data_dir::open(dir.path(), options(fleet), system_clock());
    {
        let node = open(Some(authority.fleet())).unwrap();
        assert_eq!(node.roster_version(), 0);
        assert!(node.execute(at("S1", "r0", 1, EventKind::Receipt)).is_err());
        assert_eq!(node.install_roster(signed.clone()).unwrap(), 1);
        match node.install_roster(signed.clone()) {
            Err(NodeError::Roster(InstallError::NotNewer {
                held: 1,
                offered: 1,
            })) => {}
            other => panic!("{other:?}"),
        }
        node.execute(at("S1", "r1", 1, EventKind::Receipt)).unwrap();
    }
    let node = open(Some(authority.fleet())).unwrap();
    assert_eq!(node.roster_version(), 1);
    assert_eq!(node.roster(), Some(roster));
    node.execute(at("S1", "r2", 1, EventKind::Receipt)).unwrap();
    drop(node);
    // A stored roster never silently falls back to open mode, nor to another fleet.
    let other = FleetAuthority::from_seed([7; 32]).fleet();
    for fleet in [None, Some(other)] {
        match open(fleet) {
            Err(SetupError::Store(StoreError::Roster(_))) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened with fleet {fleet:?}"),
        }
    }
    // A node in open mode takes no roster.
    let identity = Identity::from_seed([60; 32]);
    let id = identity.node_id();
    let meta = NodeMeta {
        id,
        name: "solo".into(),
        location: loc("S1"),
        role: Role::Store,
    };
    let solo = stocksync::Node::start(
        identity,
        meta,
        MemoryStore::new(),
        options(None),
        system_clock(),
    )
    .unwrap();
    match solo.install_roster(signed) {
        Err(NodeError::Roster(InstallError::OpenMode)) => {}
        other => panic!("{other:?}"),
    }
}
