//! A node embedded in a program: open a till on SQLite, take stock in, sell,
//! and read the result. Run: `cargo run --example embedded_node`.

use anyhow::Result;
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::store::sqlite::{Durability, SqliteStore};

fn main() -> Result<()> {
    let dir = tempfile_dir()?;
    let identity = Identity::generate()?;
    identity.save(&dir)?;
    let location = LocationId::new("STORE-7")?;
    let meta = NodeMeta {
        id: identity.node_id(),
        name: "till-1".into(),
        location: location.clone(),
        role: Role::Till,
    };
    let store = SqliteStore::create(&dir, &meta, Durability::Full)?;
    let node = Node::start(meta, store, NodeOptions::default(), system_clock())?;

    let sku = Sku::new("SHOE-42")?;
    let event = |id: &str, qty: u64, kind| -> Result<EventRequest> {
        Ok(EventRequest::new(
            EventId::new(id)?,
            location.clone(),
            sku.clone(),
            Quantity::new(qty)?,
            kind,
        ))
    };
    node.execute(event("receipt-1", 6, EventKind::Receipt)?)?;
    let sold = node.execute(event("sale-1", 2, EventKind::Sale)?)?;
    println!(
        "sold 2: rights now {}, on hand {}",
        sold.rights_after, sold.on_hand_after
    );
    match node.execute(event("sale-2", 9, EventKind::Sale)?) {
        Err(e) if e.is_refusal() => println!("sale of 9 refused: {e}"),
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    let again = node.execute(event("sale-1", 2, EventKind::Sale)?)?;
    println!("sale-1 sent again: replayed = {}", again.replayed);
    drop(node);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("stocksync-example-{name}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
