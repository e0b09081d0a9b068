//! Turns event subcommands into requests; the crash tests' sell loop.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::args::{Command, EventOpts};
use stocksync::model::parse_delta;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Policy, Quantity, ReasonCode,
    ReservationId, Sku, TransferId,
};

/// A fresh random event id, for callers that give none.
pub fn fresh_id() -> Result<EventId> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(EventId::new(format!("gen-{hex}"))?)
}

fn build(
    meta: &NodeMeta,
    sku: &str,
    qty: Quantity,
    kind: EventKind,
    policy: Option<&String>,
    opts: &EventOpts,
) -> Result<EventRequest> {
    let sku = Sku::new(sku)?;
    let id = match &opts.id {
        Some(i) => EventId::new(i.as_str())?,
        None => fresh_id()?,
    };
    let location = match &opts.location {
        Some(l) => LocationId::new(l.as_str())?,
        None => meta.location.clone(),
    };
    let mut req = EventRequest::new(id, location, sku, qty, kind);
    req.policy = policy.map(|p| p.parse::<Policy>()).transpose()?;
    if let Some(r) = &opts.reference {
        if r.len() > 256 {
            return Err(stocksync::error::InputError::TooLong {
                what: "reference",
                len: r.len(),
                max: 256,
            }
            .into());
        }
        req.reference = Some(r.clone());
    }
    Ok(req)
}

/// The request an event subcommand asks for.
pub fn request(cmd: &Command, meta: &NodeMeta) -> Result<EventRequest> {
    let q = |s: &str| Quantity::parse(s);
    Ok(match cmd {
        Command::Receive { sku, qty, opts } => {
            build(meta, sku, q(qty)?, EventKind::Receipt, None, opts)?
        }
        Command::Sell {
            sku,
            qty,
            policy,
            opts,
        } => build(meta, sku, q(qty)?, EventKind::Sale, policy.as_ref(), opts)?,
        Command::Order {
            sku,
            qty,
            policy,
            opts,
        } => build(
            meta,
            sku,
            q(qty)?,
            EventKind::OnlineOrder,
            policy.as_ref(),
            opts,
        )?,
        Command::Return { sku, qty, opts } => {
            build(meta, sku, q(qty)?, EventKind::Return, None, opts)?
        }
        Command::Adjust {
            sku,
            delta,
            reason,
            policy,
            opts,
        } => {
            let (increase, qty) = parse_delta(delta)?;
            let kind = EventKind::Adjustment {
                increase,
                reason: ReasonCode::new(reason.as_str())?,
            };
            build(meta, sku, qty, kind, policy.as_ref(), opts)?
        }
        Command::Reserve {
            sku,
            qty,
            reservation,
            opts,
        } => {
            let kind = EventKind::Reserve {
                reservation: ReservationId::new(reservation.as_str())?,
            };
            build(meta, sku, q(qty)?, kind, None, opts)?
        }
        Command::Release {
            sku,
            qty,
            reservation,
            opts,
        } => {
            let kind = EventKind::Release {
                reservation: ReservationId::new(reservation.as_str())?,
            };
            build(meta, sku, q(qty)?, kind, None, opts)?
        }
        Command::Fulfil {
            sku,
            qty,
            reservation,
            opts,
        } => {
            let kind = EventKind::Fulfil {
                reservation: ReservationId::new(reservation.as_str())?,
            };
            build(meta, sku, q(qty)?, kind, None, opts)?
        }
        Command::TransferOut {
            sku,
            qty,
            to,
            transfer,
            opts,
        } => {
            let kind = EventKind::TransferOut {
                to: LocationId::new(to.as_str())?,
                transfer: TransferId::new(transfer.as_str())?,
            };
            build(meta, sku, q(qty)?, kind, None, opts)?
        }
        Command::TransferIn {
            sku,
            qty,
            from,
            transfer,
            opts,
        } => {
            let kind = EventKind::TransferIn {
                from: LocationId::new(from.as_str())?,
                transfer: TransferId::new(transfer.as_str())?,
            };
            build(meta, sku, q(qty)?, kind, None, opts)?
        }
        Command::Grant { sku, qty, to, opts } => {
            let kind = EventKind::Grant {
                to: NodeId::from_hex(to)?,
            };
            build(meta, sku, q(qty)?, kind, None, opts)?
        }
        _ => anyhow::bail!("not an event command"),
    })
}

/// Sells one unit at a time from `threads` callers; prints `ack <id>` after each
/// acknowledgement and `refused <id>` when rights run out (then that caller stops).
pub fn sell_loop(dir: &Path, sku: &str, prefix: &str, count: u64, threads: u64) -> Result<()> {
    let node = super::open_node(dir)?;
    let sku = Sku::new(sku)?;
    let location = node.meta().location.clone();
    let stdout = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (node, sku, location, stdout) = (&node, sku.clone(), location.clone(), &stdout);
            s.spawn(move || -> Result<()> {
                for i in 0..count {
                    let id = EventId::new(format!("{prefix}-{t}-{i}"))?;
                    let req = EventRequest::new(
                        id.clone(),
                        location.clone(),
                        sku.clone(),
                        Quantity::new(1)?,
                        EventKind::Sale,
                    );
                    let res = node.execute(req);
                    let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
                    match res {
                        Ok(o) => writeln!(
                            out,
                            "ack {id} {}",
                            if o.replayed { "replayed" } else { "new" }
                        )?,
                        Err(e) if e.is_refusal() => {
                            writeln!(out, "refused {id}")?;
                            out.flush()?;
                            return Ok(());
                        }
                        Err(e) => return Err(e.into()),
                    }
                    out.flush()?;
                }
                Ok(())
            });
        }
    });
    Ok(())
}
