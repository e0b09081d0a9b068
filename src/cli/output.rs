//! Printing results: human text by default, JSON with --json.

use stocksync::model::{EventOutcome, NodeMeta};
use stocksync::store::sqlite::HistoryRow;
use stocksync::store::StockRow;
use stocksync::verify::Report;

fn json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Prints an error to stderr (and as JSON on stdout with --json).
pub fn error(e: &anyhow::Error, code: i32, as_json: bool) {
    let msg = format!("{e:#}");
    eprintln!("error: {msg}");
    if as_json && e.downcast_ref::<super::Reported>().is_none() {
        json(&serde_json::json!({ "error": msg, "exit_code": code }));
    }
}

/// Prints a node's identity.
pub fn meta(m: &NodeMeta, as_json: bool) {
    if as_json {
        json(&serde_json::json!({
            "node_id": m.id.to_hex(), "name": m.name, "location": m.location, "role": m.role,
        }));
    } else {
        println!(
            "node {} ({}) at {}, role {}\nid {}",
            m.name,
            m.id,
            m.location,
            m.role.as_str(),
            m.id.to_hex()
        );
    }
}

/// Prints an event's outcome.
pub fn outcome(o: &EventOutcome, as_json: bool) {
    if as_json {
        return json(o);
    }
    let again = if o.replayed {
        " (already recorded; nothing changed)"
    } else {
        ""
    };
    println!(
        "{} {} x {} at {} [id {}]{again}: rights now {}, on hand {}",
        o.kind, o.qty, o.pool.sku, o.pool.location, o.id, o.rights_after, o.on_hand_after
    );
    if o.deficit_created > 0 {
        println!(
            "DEFICIT: {} unit(s) sold beyond this node's rights; the count was wrong and the deficit is reported until a rebalance covers it",
            o.deficit_created
        );
    }
}

/// Prints stock rows.
pub fn stock(rows: &[StockRow], as_json: bool) {
    if as_json {
        return json(&rows);
    }
    println!(
        "{:<20} {:<12} {:>10} {:>8} {:>10} {:>8}",
        "SKU", "LOCATION", "ON_HAND", "HELD", "RIGHTS", "DEFICIT"
    );
    for r in rows {
        println!(
            "{:<20} {:<12} {:>10} {:>8} {:>10} {:>8}",
            r.sku, r.location, r.on_hand, r.held, r.rights, r.deficit
        );
    }
}

/// Prints an SKU's journal.
pub fn history(rows: &[HistoryRow], as_json: bool) {
    if as_json {
        return json(&rows);
    }
    for r in rows {
        let deficit = if r.deficit > 0 {
            format!(" deficit {}", r.deficit)
        } else {
            String::new()
        };
        println!(
            "{}.{:<6} {:<14} {:>6} at {:<10} id {}{deficit}",
            r.position.epoch, r.position.seq, r.kind, r.qty, r.location, r.id
        );
    }
}

/// Prints a verify report.
pub fn verify(r: &Report, as_json: bool) {
    if as_json {
        return json(r);
    }
    for c in &r.checks {
        println!(
            "{} {:<26} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!(
        "{}",
        if r.ok {
            "verify: all checks hold"
        } else {
            "verify: PROBLEMS FOUND"
        }
    );
}
