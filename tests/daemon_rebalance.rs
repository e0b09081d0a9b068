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

/// A store node named `name` at `location`, enrolled at once.
fn join_store(fleet: &Fleet, name: &str, location: &str) -> std::path::PathBuf {
    let dir = fleet.hub.parent().expect("fleet dir").join(name);
    support::ok(&[
        "init",
        "--data",
        support::p(&dir),
        "--node",
        name,
        "--location",
        location,
        "--role",
        "store",
        "--join",
        support::p(&fleet.hub),
    ]);
    dir
}

#[test]
fn a_store_manager_rebalances_the_store_and_the_hub_sees_it() {
    let fleet = Fleet::new("hub", "HQ");
    let (t1, t2) = (fleet.join("till-1", "S1"), fleet.join("till-2", "S1"));
    let store = join_store(&fleet, "store-1", "S1");
    let (id1, id2) = (node_id(&t1), node_id(&t2));
    let (ph, ps, p1, p2) = (free_port(), free_port(), free_port(), free_port());
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let ds = Daemon::start(&store, ps, &[ph]);
    let d1 = Daemon::start(&t1, p1, &[ph, ps]);
    let d2 = Daemon::start(&t2, p2, &[ph, ps, p1]);
    wait_for(
        "the store node links both tills, and the tills each other",
        || {
            let c = ds.connected();
            c.contains(&id1) && c.contains(&id2) && d2.connected().contains(&id1)
        },
        || format!("{}\n{}", ds.status(), ds.log()),
    );
    // Till-1 received the whole delivery: it holds all 30 rights.
    d1.event(json!({"kind": "receive", "sku": "TSHIRT-M", "qty": 30, "id": "r1"}));
    wait_for(
        "the store node sees the receipt",
        || ds.on_hand("TSHIRT-M", "S1") == 30,
        || ds.log(),
    );

    // A dry run prints the plan and moves nothing.
    let table = support::ok(&[
        "--data",
        support::p(&store),
        "rebalance",
        "--location",
        "S1",
        "--strategy",
        "even",
        "--dry-run",
    ]);
    assert!(table.contains("(dry run)"), "{table}");
    assert!(
        table.contains("move till-1 → till-2: 10 planned"),
        "{table}"
    );
    assert_eq!(rights_of(&d1, "S1"), 30);

    // A till is no manager: till-1 refuses till-2's order to grant to the
    // store node; the move to till-2 itself is an ordinary pull, granted
    // above till-1's floor.
    let (code, body) = d2.post_to(
        "/v1/rebalance",
        json!({"location": "S1", "strategy": "even", "skus": ["TSHIRT-M"]}),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["moved"], 10, "{body}");
    let outcome = |b: &Value, to: &str| -> Value {
        b["pools"][0]["moves"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["to"] == to))
            .map(|m| m["outcome"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(outcome(&body, "store-1"), "not_permitted", "{body}");
    assert_eq!(outcome(&body, "till-2"), "granted", "{body}");
    wait_for(
        "the store node sees till-1 at 20",
        || {
            ds.get("/v1/stock/TSHIRT-M")
                .1
                .to_string()
                .contains("\"on_hand\":30")
                && rights_of(&d1, "S1") == 20
        },
        || format!("{:?}", d1.rows_at("S1")),
    );

    // The store manager's rebalance: till-1 is ordered to grant 10 to the store.
    let out = support::ok(&[
        "--data",
        support::p(&store),
        "--json",
        "rebalance",
        "--location",
        "S1",
        "--strategy",
        "even",
    ]);
    let report: Value = serde_json::from_str(&out).expect("report JSON");
    assert_eq!(report["moved"], 10, "{report}");
    assert_eq!(outcome(&report, "store-1"), "granted", "{report}");
    // Every node, the hub included, sees 10 rights each and 30 in all.
    for d in [&ds, &d1, &d2, &hub] {
        wait_for(
            "the rebalance reaches every node",
            || {
                let rows = d.get("/v1/stock/TSHIRT-M").1;
                rows.as_array().is_some_and(|r| {
                    r.iter()
                        .any(|row| row["location"] == "S1" && row["on_hand"] == 30)
                })
            },
            || d.log(),
        );
    }
    for d in [&ds, &d1, &d2] {
        wait_for(
            "each holder has 10",
            || rights_of(d, "S1") == 10,
            || format!("{:?}", d.rows_at("S1")),
        );
    }
}
