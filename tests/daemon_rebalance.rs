//! Scenario 3 over real QUIC: two till daemons of one store, the hub
//! unreachable (never started). Till-1 has no rights; till-2 received the
//! stock. A strict sale on till-1 borrows from till-2 within the deadline and
//! succeeds; a sale beyond what till-2 can spare is refused with who answered
//! what; totals stay exact on both tills.

#[path = "daemon_net/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, node_id, wait_for, Daemon, Fleet};

fn rights_of(d: &Daemon, location: &str) -> i64 {
    d.rows_at(location)
        .iter()
        .find(|r| r["sku"] == "TSHIRT-M")
        .and_then(|r| r["rights"].as_i64())
        .unwrap_or(0)
}

#[test]
fn a_till_out_of_rights_borrows_from_its_lan_peer_with_the_hub_down() {
    let fleet = Fleet::new("hub", "HQ");
    let (t1, t2) = (fleet.join("till-1", "S1"), fleet.join("till-2", "S1"));
    let (id1, id2) = (node_id(&t1), node_id(&t2));
    let (ph, p1, p2) = (free_port(), free_port(), free_port());
    // The store is online first: both tills learn the roster listing them both
    // from the hub (till-1 was enrolled before till-2). Then the internet goes.
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let d1 = Daemon::start(&t1, p1, &[ph, p2]);
    let d2 = Daemon::start(&t2, p2, &[ph, p1]);
    wait_for(
        "the two tills link",
        || d1.connected().contains(&id2) && d2.connected().contains(&id1),
        || format!("{}\n{}", d1.status(), d1.log()),
    );
    hub.kill9();
    d2.event(json!({"kind": "receive", "sku": "TSHIRT-M", "qty": 10, "id": "r1"}));
    wait_for(
        "till-1 sees the receipt",
        || d1.on_hand("TSHIRT-M", "S1") == 10,
        || d1.log(),
    );
    assert_eq!(rights_of(&d1, "S1"), 0);

    // Till-1 holds nothing: its strict sale borrows from till-2 and succeeds.
    let t = Instant::now();
    let (code, body) = d1.post(json!({"kind": "sell", "sku": "TSHIRT-M", "qty": 3, "id": "s1"}));
    let borrowed_in = t.elapsed();
    assert_eq!(code, 201, "{body}\n{}", d1.log());
    println!("sale with a LAN borrow answered in {borrowed_in:?}");
    assert!(borrowed_in < Duration::from_millis(250), "{borrowed_in:?}");

    // Below its low-water mark after the sale, till-1 pulls more by itself.
    let status = |d: &Daemon| -> Value { d.status()["rebalance"].clone() };
    wait_for(
        "till-2 made the grants and till-1 holds the pulled rights",
        || status(&d2)["grants_made"].as_u64() >= Some(2) && rights_of(&d1, "S1") > 0,
        || format!("{}\n{}", status(&d1), status(&d2)),
    );
    assert!(
        status(&d1)["asks_sent"].as_u64() >= Some(2),
        "{}",
        status(&d1)
    );

    // More than till-2 can spare above its floor: refused, saying who answered.
    let (code, body) = d1.post(json!({"kind": "sell", "sku": "TSHIRT-M", "qty": 9, "id": "s2"}));
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_rights", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("till-2"), "{msg}");

    // Both tills agree, and every unit on hand is a right of one of them.
    wait_for(
        "the tills agree",
        || {
            d1.on_hand("TSHIRT-M", "S1") == 7
                && d2.on_hand("TSHIRT-M", "S1") == 7
                && rights_of(&d1, "S1") + rights_of(&d2, "S1") == 7
        },
        || format!("{:?}\n{:?}", d1.rows_at("S1"), d2.rows_at("S1")),
    );
}
