//! `stocksync demo`: a narrated day of one till, through the same library calls the CLI uses.

use std::path::PathBuf;

use anyhow::Result;

use stocksync::data_dir::Reader;
use stocksync::error::NodeError;
use stocksync::model::{
    EventId, EventKind, EventRequest, Policy, Quantity, ReasonCode, ReservationId, Sku,
};
use stocksync::node::Node;

struct Day<'a> {
    node: &'a Node,
    n: u32,
}

impl Day<'_> {
    fn event(
        &mut self,
        sku: &str,
        qty: u64,
        kind: EventKind,
        policy: Option<Policy>,
    ) -> Result<Result<(), NodeError>> {
        self.n += 1;
        let mut req = EventRequest::new(
            EventId::new(format!("demo-{}", self.n))?,
            self.node.meta().location.clone(),
            Sku::new(sku)?,
            Quantity::new(qty)?,
            kind,
        );
        req.policy = policy;
        Ok(self.node.execute(req).map(|o| {
            print!(
                "   -> {} {} x {}: rights now {}, on hand {}",
                o.kind, o.qty, o.pool.sku, o.rights_after, o.on_hand_after
            );
            if o.deficit_created > 0 {
                print!("  [DEFICIT of {} recorded]", o.deficit_created);
            }
            println!();
        }))
    }
}

/// Runs the narrated day; keeps the data directory at `keep` if given.
pub fn run(keep: Option<PathBuf>) -> Result<()> {
    let dir = match &keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("stocksync-demo-{}", super::events::fresh_id()?)),
    };
    println!("== stocksync demo: one till's day, offline, on SQLite + Automerge ==");
    let meta = super::init_node(&dir, "till-1", "STORE-1", "till")?;
    println!(
        "07:55 till-1 created at STORE-1 with node id {} (key pair in {}/node.key)",
        meta.id,
        dir.display()
    );
    let node = super::open_node(&dir)?;
    let mut day = Day { node: &node, n: 0 };

    println!("08:00 goods in: 10 x TSHIRT-M and 4 x MUG");
    day.event("TSHIRT-M", 10, EventKind::Receipt, None)??;
    day.event("MUG", 4, EventKind::Receipt, None)??;

    println!("09:12 a customer buys 3 T-shirts");
    day.event("TSHIRT-M", 3, EventKind::Sale, None)??;

    println!("10:40 an online-style promise of 8 T-shirts under strict policy: only 7 rights left");
    match day.event("TSHIRT-M", 8, EventKind::Sale, Some(Policy::Strict))? {
        Err(e) if e.is_refusal() => println!("   -> refused: {e}"),
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }

    println!("11:05 a customer at the till holds 8 T-shirts in hand: record policy accepts and reports the shortfall");
    day.event("TSHIRT-M", 8, EventKind::Sale, Some(Policy::Record))??;

    println!("13:30 a customer returns one T-shirt");
    day.event("TSHIRT-M", 1, EventKind::Return, None)??;

    println!("15:00 a web order reserves 2 mugs, then ships them");
    let reservation = ReservationId::new("WEB-1001")?;
    day.event(
        "MUG",
        2,
        EventKind::Reserve {
            reservation: reservation.clone(),
        },
        None,
    )??;
    day.event("MUG", 2, EventKind::Fulfil { reservation }, None)??;

    println!("18:00 the evening count finds one mug broken");
    day.event(
        "MUG",
        1,
        EventKind::Adjustment {
            increase: false,
            reason: ReasonCode::new("damage")?,
        },
        None,
    )??;

    println!("18:05 the till retries the 09:12 sale with the same event id: applied once");
    let again = EventRequest::new(
        EventId::new("demo-3")?,
        meta.location.clone(),
        Sku::new("TSHIRT-M")?,
        Quantity::new(3)?,
        EventKind::Sale,
    );
    let o = node.execute(again)?;
    println!(
        "   -> replayed: {}, the first call's stored result comes back (on hand after it: {})",
        o.replayed, o.on_hand_after
    );
    node.shutdown();

    println!("18:10 closing stock (from the SQLite `stock` table):");
    let reader = Reader::open(&dir)?;
    super::output::stock(&reader.stock(None)?, false);
    let report = reader.verify()?;
    println!("18:11 verify re-derives every count from the Automerge changes and the journal:");
    super::output::verify(&report, false);
    drop(reader);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    anyhow::ensure!(report.ok, "verify failed");
    Ok(())
}
