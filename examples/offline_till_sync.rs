//! Scenario 1 in miniature, over the real sync engine and an in-memory network:
//! a store node grants rights to two tills; the store's link drops; the tills
//! keep selling within their rights (an oversell is refused); the link returns
//! and every replica converges to the exact counts. Run:
//! `cargo run --example offline_till_sync`.

use anyhow::Result;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, PoolKey, Quantity, Role, Sku,
};
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::SyncConfig;

const NAMES: [&str; 3] = ["store", "till-a", "till-b"];

fn event(m: &mut Mesh, i: usize, id: &str, qty: u64, kind: EventKind) -> Result<String> {
    let req = EventRequest::new(
        EventId::new(id)?,
        LocationId::new("S1")?,
        Sku::new("TEE")?,
        Quantity::new(qty)?,
        kind,
    );
    Ok(match m.event(i, req) {
        Ok(o) => format!(
            "ok (rights now {}, on hand as seen here {})",
            o.rights_after, o.on_hand_after
        ),
        Err(e) => format!("REFUSED: {e}"),
    })
}

fn on_hand(m: &Mesh, i: usize) -> Result<i64> {
    let pool = PoolKey::new(LocationId::new("S1")?, Sku::new("TEE")?);
    Ok(m.book(i).pool(&pool).map(|p| p.on_hand()).unwrap_or(0))
}

fn main() -> Result<()> {
    let mut m = Mesh::new(SyncConfig::default());
    for (i, (name, role)) in NAMES
        .iter()
        .zip([Role::Store, Role::Till, Role::Till])
        .enumerate()
    {
        m.add([i as u8 + 1; 32], MemoryStore::new(), |id| NodeMeta {
            id,
            name: name.to_string(),
            location: LocationId::new("S1").expect("valid location"),
            role,
        })?;
    }
    m.connect(0, 1);
    m.connect(0, 2);
    m.connect(1, 2);
    let (a, b) = (m.nodes[1].id, m.nodes[2].id);
    println!(
        "store receives 10 TEE: {}",
        event(&mut m, 0, "rcv", 10, EventKind::Receipt)?
    );
    println!(
        "store grants 4 to each till: {}",
        event(&mut m, 0, "g-a", 4, EventKind::Grant { to: a })?
    );
    event(&mut m, 0, "g-b", 4, EventKind::Grant { to: b })?;
    m.settle();

    println!("-- the store's link drops; the tills keep selling on their own rights --");
    m.cut = vec![(0, 1), (1, 0), (0, 2), (2, 0)];
    println!(
        "till-a sells 3: {}",
        event(&mut m, 1, "a1", 3, EventKind::Sale)?
    );
    println!(
        "till-b sells 4: {}",
        event(&mut m, 2, "b1", 4, EventKind::Sale)?
    );
    println!(
        "till-b sells 1 more: {}",
        event(&mut m, 2, "b2", 1, EventKind::Sale)?
    );
    m.settle();
    println!(
        "the store still sees on hand {} (it heard nothing)",
        on_hand(&m, 0)?
    );

    println!("-- the link returns; anti-entropy runs on the next probe --");
    m.cut.clear();
    m.advance(1_500);
    for (i, name) in NAMES.iter().enumerate() {
        println!("{name:>7} sees on hand {}", on_hand(&m, i)?);
    }
    for i in 0..NAMES.len() {
        anyhow::ensure!(
            on_hand(&m, i)? == 3,
            "every replica converges to 10 - 3 - 4 = 3"
        );
    }
    println!("converged: 10 received, 7 sold, 3 on hand everywhere");
    Ok(())
}
