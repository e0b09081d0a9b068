//! Many tills selling at once, each sale timed from its acknowledgement
//! until the hub holds it (one thread polls the hub for every till).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::fleet::{start, Fleet, Live, Peer};
use super::{event, hist, link_to, per, put, record, wait_for, wait_synced, LIMIT, POLL};
use stocksync::model::{EventKind, NodeId, Position};
use stocksync::node::Node;
use stocksync::store::sqlite::Durability;

/// When the hub's head of each writer changed, as one thread polling it saw.
pub(super) struct Observed {
    /// Per writer: `(head, first seen)`, in order.
    seen: Vec<Vec<(Position, Instant)>>,
    polls: u64,
    polling: Duration,
}

impl Observed {
    /// When a head at or past `pos` of writer `w` was first seen.
    fn at(&self, w: usize, pos: Position) -> Option<Instant> {
        let s = &self.seen[w];
        s.get(s.partition_point(|(p, _)| *p < pos)).map(|(_, t)| *t)
    }
}

/// Polls `hub`'s heads of `writers` until `last` is set and every head reached it.
pub(super) fn observe(
    hub: &Node,
    writers: &[NodeId],
    last: &Mutex<Option<Vec<Position>>>,
) -> Result<Observed> {
    let mut o = Observed {
        seen: vec![Vec::new(); writers.len()],
        polls: 0,
        polling: Duration::ZERO,
    };
    let t0 = Instant::now();
    loop {
        let heads = hub.query(|r| {
            writers
                .iter()
                .map(|w| r.heads().get(w).map(|h| h.position))
                .collect::<Vec<_>>()
        })?;
        let now = Instant::now();
        for (s, h) in o.seen.iter_mut().zip(&heads) {
            if let Some(h) = h {
                if s.last().is_none_or(|(p, _)| p < h) {
                    s.push((*h, now));
                }
            }
        }
        o.polls += 1;
        let done = last
            .lock()
            .map_err(|_| anyhow!("a seller panicked"))?
            .as_ref()
            .is_some_and(|l| {
                l.iter()
                    .zip(&heads)
                    .all(|(l, h)| h.is_some_and(|h| h >= *l))
            });
        if done {
            break;
        }
        if t0.elapsed() > LIMIT * 2 {
            return Err(anyhow!("the hub did not catch up with the tills"));
        }
        std::thread::sleep(POLL);
    }
    o.polling = t0.elapsed();
    Ok(o)
}

/// What one till's seller thread measured.
pub(super) struct Sold {
    commit: Histogram<u64>,
    acks: Vec<(Position, Instant)>,
}

/// `sales` sales on `node`, back to back, or one every `gap` (open loop).
pub(super) fn sell_loop(node: &Node, id: &str, sales: u64, gap: Option<Duration>) -> Result<Sold> {
    let mut s = Sold {
        commit: hist(),
        acks: Vec::with_capacity(sales as usize),
    };
    let t0 = Instant::now();
    for i in 0..sales {
        if let Some(gap) = gap {
            let due = t0 + gap * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let t = Instant::now();
        let pos = event(node, format!("{id}-{i}"), 1, EventKind::Sale)?;
        let ack = Instant::now();
        record(&mut s.commit, ack - t)?;
        s.acks.push((pos, ack));
    }
    Ok(s)
}

/// `tills` tills selling at once, each linked to the hub and to one LAN peer
/// (pairs), back to back or one sale every `gap` each; each sale timed from
/// its acknowledgement until the hub holds it. Figures named `prefix_...`.
#[allow(clippy::too_many_arguments)]
pub(super) fn load(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    hub: &Live,
    tills: &[Peer],
    sales: u64,
    gap: Option<Duration>,
    prefix: &str,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let per_till = (sales / tills.len() as u64).max(1);
    let hub_addr = hub.net.local_addr();
    let mut live = Vec::new();
    for p in tills {
        let node = f.open(p, Durability::Full)?;
        event(
            &node,
            format!("{prefix}-stock-in"),
            per_till + 10,
            EventKind::Receipt,
        )?;
        live.push(start(rt, f, p, node, vec![hub_addr])?);
    }
    // Dialling spawns on the runtime.
    let entered = rt.enter();
    for pair in live.chunks(2) {
        if let [a, b] = pair {
            a.net.add_peer(b.net.local_addr(), Some(b.node.id()));
        }
    }
    drop(entered);
    for l in &live {
        wait_for("the tills' links", || {
            Ok(l.net.peers().iter().all(|p| p.connected))
        })?;
        wait_synced(&hub.node, &l.node)?;
    }
    let hub_id = hub.node.id();
    let before = live
        .iter()
        .map(|l| link_to(&l.net, hub_id))
        .collect::<Result<Vec<_>>>()?;
    let writers: Vec<NodeId> = tills.iter().map(|p| p.id).collect();
    let last = Mutex::new(None);
    let t0 = Instant::now();
    let (observed, sold, wall) = std::thread::scope(|s| {
        let observer = s.spawn(|| observe(&hub.node, &writers, &last));
        let sellers: Vec<_> = live
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let node = l.node.clone();
                s.spawn(move || sell_loop(&node, &format!("{prefix}-{i}"), per_till, gap))
            })
            .collect();
        let sold: Result<Vec<Sold>> = sellers
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a seller panicked"))?)
            .collect();
        let wall = t0.elapsed();
        let heads = sold
            .as_ref()
            .map(|v| {
                v.iter()
                    .map(|s| s.acks.last().map(|a| a.0).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_else(|_| vec![Position::default(); writers.len()]);
        if let Ok(mut l) = last.lock() {
            *l = Some(heads);
        }
        let observed = observer
            .join()
            .map_err(|_| anyhow!("the observer panicked"));
        (observed, sold, wall)
    });
    let (observed, sold) = (observed??, sold?);
    let (mut commit, mut to_hub) = (hist(), hist());
    let total: u64 = sold.iter().map(|s| s.acks.len() as u64).sum();
    for (w, s) in sold.iter().enumerate() {
        commit.add(&s.commit)?;
        for (pos, ack) in &s.acks {
            let seen = observed
                .at(w, *pos)
                .ok_or(anyhow!("a sale never reached the hub"))?;
            record(&mut to_hub, seen.saturating_duration_since(*ack))?;
        }
    }
    let after = live
        .iter()
        .map(|l| link_to(&l.net, hub_id))
        .collect::<Result<Vec<_>>>()?;
    let (mut udp, mut payload) = (0, 0);
    for (a, b) in after.iter().zip(&before) {
        udp += a.udp_tx_bytes - b.udp_tx_bytes;
        payload += a.payload_tx_bytes - b.payload_tx_bytes;
    }
    out.insert(format!("{prefix}_tills"), json!(tills.len()));
    out.insert(
        format!("{prefix}_ms_between_sales_per_till"),
        json!(gap.map_or(0, |g| g.as_millis() as u64)),
    );
    out.insert(format!("{prefix}_sales"), json!(total));
    out.insert(
        format!("{prefix}_sales_per_s"),
        json!((total as f64 / wall.as_secs_f64()).round()),
    );
    put(out, &format!("{prefix}_sale_commit"), &commit);
    put(out, &format!("{prefix}_sale_to_hub"), &to_hub);
    out.insert(
        format!("{prefix}_poll_period_us"),
        json!(per(observed.polling.as_micros() as u64, observed.polls)),
    );
    out.insert(
        format!("{prefix}_udp_bytes_per_sale_to_hub"),
        json!(per(udp, total)),
    );
    out.insert(
        format!("{prefix}_payload_bytes_per_sale_to_hub"),
        json!(per(payload, total)),
    );
    rt.block_on(async {
        for l in live {
            l.net.shutdown().await;
        }
    });
    Ok(())
}
