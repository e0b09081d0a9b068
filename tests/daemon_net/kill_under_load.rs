//! Scenario 5 over real daemons: a till's API takes sales from several
//! concurrent clients when the till gets SIGKILL mid-stream; after a restart
//! on the same directory no acknowledged sale is lost or doubled, every sale
//! sent is counted once after its retry, and the hub converges to the same.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{free_port, node_id, ok, p, run, wait_for, Daemon, Fleet, DEADLINE};

const SKU: &str = "TSHIRT-M";
const STOCK: i64 = 100_000;
const CLIENTS: usize = 4;

/// `POST /v1/events` for a one-unit sale `id`; `None` when no answer came
/// (the connection refused, reset or closed: the daemon is gone).
fn try_sell(agent: &ureq::Agent, d: &Daemon, id: &str) -> Option<(u16, Value)> {
    let body = json!({"kind": "sell", "sku": SKU, "qty": 1, "id": id}).to_string();
    let mut r = agent
        .post(format!("{}/v1/events", d.base))
        .header("Authorization", format!("Bearer {}", d.token))
        .content_type("application/json")
        .send(body)
        .ok()?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// What one client saw: ids answered 201/200, and the id sent when the
/// daemon died (no answer: it may or may not be applied).
#[derive(Default)]
struct Client {
    acked: Vec<String>,
    unanswered: Vec<String>,
}

/// The number of times each id is in the journal of `SKU` (read from the database).
fn journal(dir: &std::path::Path) -> HashMap<String, usize> {
    let rows: Value =
        serde_json::from_str(&ok(&["--data", p(dir), "history", SKU, "--json"])).expect("JSON");
    let mut seen = HashMap::new();
    for r in rows.as_array().expect("rows") {
        *seen
            .entry(r["id"].as_str().expect("id").to_string())
            .or_default() += 1;
    }
    seen
}

#[test]
fn a_till_killed_while_its_api_takes_concurrent_sales_loses_and_doubles_nothing() {
    let fleet = Fleet::new("hub", "HQ");
    let t1 = fleet.join("till-1", "S1");
    let id1 = node_id(&t1);
    let (ph, p1) = (free_port(), free_port());
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let d1 = Daemon::start(&t1, p1, &[ph]);
    d1.event(json!({"kind": "receive", "sku": SKU, "qty": STOCK, "id": "rcv"}));
    wait_for(
        "the hub sees the receipt",
        || hub.on_hand(SKU, "S1") == STOCK,
        || hub.status().to_string(),
    );

    let answered = AtomicUsize::new(0);
    let clients: Vec<Client> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (d1, answered) = (&d1, &answered);
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(DEADLINE))
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let mut me = Client::default();
                    for i in 0.. {
                        let id = format!("c{c}-{i}");
                        match try_sell(&agent, d1, &id) {
                            Some((200 | 201, _)) => {
                                me.acked.push(id);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Some((status, v)) => panic!("sale {id}: {status} {v}"),
                            None => {
                                me.unanswered.push(id);
                                break;
                            }
                        }
                    }
                    me
                })
            })
            .collect();
        let end = Instant::now() + DEADLINE;
        while answered.load(Ordering::Relaxed) < 300 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        // SIGKILL while every client has a request in flight or about to.
        let pid = d1.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child process, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    d1.kill9();
    let acked: Vec<&String> = clients.iter().flat_map(|c| &c.acked).collect();
    let unanswered: Vec<&String> = clients.iter().flat_map(|c| &c.unanswered).collect();
    assert!(acked.len() >= 300, "{} sales answered", acked.len());
    assert_eq!(unanswered.len(), CLIENTS, "each client lost one answer");

    // After the restart: every acknowledged sale is in the journal exactly
    // once; the unanswered ones once or not at all.
    wait_for(
        "the hub notices till-1 is gone",
        || !hub.connected().contains(&id1),
        || hub.status().to_string(),
    );
    let d1 = Daemon::start(&t1, p1, &[ph]);
    let seen = journal(&t1);
    assert!(seen.values().all(|n| *n == 1), "an event recorded twice");
    for id in &acked {
        assert_eq!(seen.get(*id), Some(&1), "acknowledged sale {id} lost");
    }
    let durable_unanswered = unanswered
        .iter()
        .filter(|id| seen.contains_key(**id))
        .count();
    let on_hand = d1.on_hand(SKU, "S1");
    assert_eq!(on_hand, STOCK - (acked.len() + durable_unanswered) as i64);

    // Retries: each acknowledged id is a replay; each unanswered one is
    // applied now or replayed, once either way.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for id in &acked {
        let (status, v) = try_sell(&agent, &d1, id).expect("answer");
        assert_eq!((status, &v["replayed"]), (200, &json!(true)), "{id}: {v}");
    }
    for id in &unanswered {
        let (status, v) = try_sell(&agent, &d1, id).expect("answer");
        let was_durable = seen.contains_key(*id);
        assert_eq!(status, if was_durable { 200 } else { 201 }, "{id}: {v}");
    }
    let seen = journal(&t1);
    assert!(seen.values().all(|n| *n == 1), "an event recorded twice");
    let sales = (acked.len() + unanswered.len()) as i64;
    assert_eq!(
        seen.len() as i64,
        sales + 1,
        "the receipt and each sale once"
    );
    let want = STOCK - sales;
    let rows = d1.rows_at("S1");
    assert_eq!(rows[0]["on_hand"], want, "{rows:?}");
    assert_eq!(
        rows[0]["rights"], want,
        "rights spent once per sale: {rows:?}"
    );
    assert!(rows[0]["deficit"] == 0, "{rows:?}");
    let out = run(&["--data", p(&t1), "verify"]);
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The hub converges to the same count.
    wait_for(
        "the hub converges to the till's count",
        || hub.on_hand(SKU, "S1") == want,
        || format!("want {want}\n{}", hub.status()),
    );
    eprintln!(
        "{} sales acknowledged before SIGKILL, {} sent unanswered ({} of them durable)",
        acked.len(),
        unanswered.len(),
        durable_unanswered
    );
}
