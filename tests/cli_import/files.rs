//! The test files: a list of mixed events, written as JSON lines or CSV, and
//! the stock a single node must show after them (computed here, not asked of
//! the program).

use std::collections::BTreeMap;

use serde_json::json;

/// One event of a test file: kind, SKU, quantity (signed for adjust), id and extra fields.
pub struct Ev {
    pub kind: &'static str,
    pub sku: &'static str,
    pub qty: i64,
    pub id: &'static str,
    pub extra: &'static [(&'static str, &'static str)],
}

const fn ev(
    kind: &'static str,
    sku: &'static str,
    qty: i64,
    id: &'static str,
    extra: &'static [(&'static str, &'static str)],
) -> Ev {
    Ev {
        kind,
        sku,
        qty,
        id,
        extra,
    }
}

/// A node id other than the test node's (a grant only needs a receiver's id).
const OTHER_NODE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// Every kind, on the node's location S1 and on WH.
pub const MIXED: &[Ev] = &[
    ev("receive", "A", 20, "r1", &[("ref", "ASN-1, box 2")]),
    ev("receive", "B", 5, "r2", &[]),
    ev("sell", "A", 3, "s1", &[]),
    ev("order", "B", 1, "o1", &[]),
    ev("return", "A", 1, "ret1", &[]),
    ev("adjust", "A", -2, "adj1", &[("reason", "damage")]),
    ev("adjust", "B", 4, "adj2", &[("reason", "count")]),
    ev("reserve", "A", 3, "res1", &[("reservation", "W1")]),
    ev("fulfil", "A", 1, "f1", &[("reservation", "W1")]),
    ev("release", "A", 1, "rel1", &[("reservation", "W1")]),
    ev(
        "transfer-out",
        "A",
        4,
        "to1",
        &[("to", "S2"), ("transfer", "T1")],
    ),
    ev("grant", "A", 2, "g1", &[("to", OTHER_NODE)]),
    ev(
        "transfer-in",
        "C",
        6,
        "ti1",
        &[("from", "S2"), ("transfer", "T0")],
    ),
    ev("receive", "D", 3, "r3", &[("location", "WH")]),
    ev("sell", "D", 1, "s2", &[("location", "WH")]),
    ev("sell", "B", 9, "s3", &[("policy", "record")]),
];

/// The counters of one pool of a single node.
#[derive(Default, Clone, Copy)]
struct Pool {
    minted: i64,
    consumed: i64,
    reserved: i64,
    released: i64,
    granted: i64,
}

/// `(location, sku) -> (on_hand, held, rights, deficit)` after `events` on a fresh node at S1.
pub fn expected(events: &[Ev]) -> BTreeMap<(String, String), (i64, i64, i64, i64)> {
    let mut pools: BTreeMap<(String, String), Pool> = BTreeMap::new();
    for e in events {
        let loc = e
            .extra
            .iter()
            .find(|(k, _)| *k == "location")
            .map_or("S1", |(_, v)| *v);
        let p = pools.entry((loc.into(), e.sku.into())).or_default();
        let q = e.qty.abs();
        match e.kind {
            "receive" | "return" | "transfer-in" => p.minted += q,
            "sell" | "order" | "transfer-out" => p.consumed += q,
            "adjust" if e.qty > 0 => p.minted += q,
            "adjust" => p.consumed += q,
            "reserve" => p.reserved += q,
            "release" => p.released += q,
            "fulfil" => {
                p.released += q;
                p.consumed += q;
            }
            "grant" => p.granted += q,
            other => panic!("no model for {other}"),
        }
    }
    pools
        .into_iter()
        .map(|(k, p)| {
            let held = p.reserved - p.released;
            let rights = p.minted - p.consumed - held - p.granted;
            (k, (p.minted - p.consumed, held, rights, (-rights).max(0)))
        })
        .collect()
}

pub fn jsonl(events: &[Ev]) -> String {
    let mut s = String::new();
    for (i, e) in events.iter().enumerate() {
        let mut o = json!({ "kind": e.kind, "sku": e.sku, "id": e.id });
        // Quantities as numbers and as text: both are accepted.
        o["qty"] = if i % 2 == 0 {
            json!(e.qty)
        } else if e.kind == "adjust" && e.qty > 0 {
            json!(format!("+{}", e.qty))
        } else {
            json!(e.qty.to_string())
        };
        for (k, v) in e.extra {
            o[*k] = json!(v);
        }
        s.push_str(&o.to_string());
        s.push_str(if i == 3 { "\n\n   \n" } else { "\n" });
    }
    s
}

/// CSV with the columns in another order than the fields, CR LF line ends and quoting.
pub fn csv(events: &[Ev]) -> String {
    let cols = [
        "id",
        "kind",
        "sku",
        "qty",
        "location",
        "to",
        "from",
        "transfer",
        "reservation",
        "reason",
        "policy",
        "ref",
    ];
    let mut s = cols.join(",") + "\r\n";
    for e in events {
        let cell = |c: &str| -> String {
            let v = match c {
                "id" => e.id.to_string(),
                "kind" => e.kind.to_string(),
                "sku" => e.sku.to_string(),
                "qty" => e.qty.to_string(),
                _ => e
                    .extra
                    .iter()
                    .find(|(k, _)| *k == c)
                    .map_or(String::new(), |(_, v)| v.to_string()),
            };
            if v.contains(',') {
                format!("\"{v}\"")
            } else {
                v
            }
        };
        s.push_str(&cols.map(cell).join(","));
        s.push_str("\r\n");
    }
    s
}
