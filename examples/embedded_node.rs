//! A node embedded in a program: create a till's data directory, open it, take
//! stock in, sell, and read the result. Run: `cargo run --example embedded_node`.

use anyhow::Result;
use stocksync::{
    data_dir, system_clock, EventId, EventKind, EventRequest, NodeOptions, NodeSpec, Quantity,
    Reader, Sku,
};

fn main() -> Result<()> {
    let dir = tempfile_dir()?;
    let meta = data_dir::init(&dir, &NodeSpec::parse("till-1", "STORE-7", "till")?)?;
    let node = data_dir::open(&dir, NodeOptions::default(), system_clock())?;

    let sku = Sku::new("SHOE-42")?;
    let event = |id: &str, qty: u64, kind| -> Result<EventRequest> {
        Ok(EventRequest::new(
            EventId::new(id)?,
            meta.location.clone(),
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
    // Reading needs no lock: a POS back office can do it while the till runs.
    let reader = Reader::open(&dir)?;
    for row in reader.stock(None)? {
        println!(
            "{} @ {}: on hand {}, this till's rights {}",
            row.sku, row.location, row.on_hand, row.rights
        );
    }
    anyhow::ensure!(reader.verify()?.ok, "verify failed");
    drop(reader);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(std::env::temp_dir().join(format!("stocksync-example-{name}")))
}
