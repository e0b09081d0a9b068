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

/// The event commands, by the name the command line gives them (an import line's `kind`).
pub const EVENT_KINDS: [&str; 11] = [
    "receive",
    "sell",
    "order",
    "return",
    "adjust",
    "reserve",
    "release",
    "fulfil",
    "transfer-out",
    "transfer-in",
    "grant",
];

/// One event as text, from a command line or an import line: the command's
/// name, its arguments and its flags (named as the flags are).
#[derive(Clone, Copy, Debug, Default)]
pub struct EventFields<'a> {
    /// The command's name, one of [`EVENT_KINDS`].
    pub kind: &'a str,
    /// SKU.
    pub sku: &'a str,
    /// Units; signed for `adjust`.
    pub qty: &'a str,
    /// `--id`: idempotency key (a fresh one when absent).
    pub id: Option<&'a str>,
    /// `--location`: the pool's location (the node's own when absent).
    pub location: Option<&'a str>,
    /// `--ref`: reference for the audit trail.
    pub reference: Option<&'a str>,
    /// `--policy`: strict or record.
    pub policy: Option<&'a str>,
    /// `--reason`: an adjustment's reason code.
    pub reason: Option<&'a str>,
    /// `--reservation`: a hold's id.
    pub reservation: Option<&'a str>,
    /// `--to`: destination location (transfer-out) or receiving node id (grant).
    pub to: Option<&'a str>,
    /// `--from`: origin location (transfer-in).
    pub from: Option<&'a str>,
    /// `--transfer`: transfer id.
    pub transfer: Option<&'a str>,
}

/// A field an event cannot do without, or one its kind does not take.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// Not one of [`EVENT_KINDS`].
    #[error("unknown kind {0:?}: use one of {kinds}", kinds = EVENT_KINDS.join(", "))]
    UnknownKind(String),
    /// A required field is absent (an empty CSV cell counts as absent).
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field the kind does not take.
    #[error("field {field} does not apply to {kind}")]
    NotApplicable {
        /// The field.
        field: &'static str,
        /// The kind.
        kind: String,
    },
}

/// The options (beyond id, location and ref) each kind takes; `None` for an unknown kind.
fn options_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "receive" | "return" => &[],
        "sell" | "order" => &["policy"],
        "adjust" => &["reason", "policy"],
        "reserve" | "release" | "fulfil" => &["reservation"],
        "transfer-out" => &["to", "transfer"],
        "transfer-in" => &["from", "transfer"],
        "grant" => &["to"],
        _ => return None,
    })
}

/// Builds the request `f` describes for a node with `meta`: the one place that
/// validates an event's fields, for the command line and for `import` alike.
pub fn build(f: &EventFields<'_>, meta: &NodeMeta) -> Result<EventRequest> {
    let allowed = options_of(f.kind).ok_or_else(|| FieldError::UnknownKind(f.kind.into()))?;
    let given = [
        ("policy", f.policy),
        ("reason", f.reason),
        ("reservation", f.reservation),
        ("to", f.to),
        ("from", f.from),
        ("transfer", f.transfer),
    ];
    if let Some((field, _)) = given
        .iter()
        .find(|(name, v)| v.is_some() && !allowed.contains(name))
    {
        return Err(FieldError::NotApplicable {
            field,
            kind: f.kind.into(),
        }
        .into());
    }
    let q = || Quantity::parse(f.qty);
    let reservation = || -> Result<ReservationId> {
        Ok(ReservationId::new(need("reservation", f.reservation)?)?)
    };
    let transfer = || -> Result<TransferId> { Ok(TransferId::new(need("transfer", f.transfer)?)?) };
    let (qty, kind) = match f.kind {
        "receive" => (q()?, EventKind::Receipt),
        "sell" => (q()?, EventKind::Sale),
        "order" => (q()?, EventKind::OnlineOrder),
        "return" => (q()?, EventKind::Return),
        "adjust" => {
            let (increase, qty) = parse_delta(f.qty)?;
            let reason = ReasonCode::new(need("reason", f.reason)?)?;
            (qty, EventKind::Adjustment { increase, reason })
        }
        "reserve" => (
            q()?,
            EventKind::Reserve {
                reservation: reservation()?,
            },
        ),
        "release" => (
            q()?,
            EventKind::Release {
                reservation: reservation()?,
            },
        ),
        "fulfil" => (
            q()?,
            EventKind::Fulfil {
                reservation: reservation()?,
            },
        ),
        "transfer-out" => {
            let qty = q()?;
            let to = LocationId::new(need("to", f.to)?)?;
            (
                qty,
                EventKind::TransferOut {
                    to,
                    transfer: transfer()?,
                },
            )
        }
        "transfer-in" => {
            let qty = q()?;
            let from = LocationId::new(need("from", f.from)?)?;
            (
                qty,
                EventKind::TransferIn {
                    from,
                    transfer: transfer()?,
                },
            )
        }
        "grant" => {
            let qty = q()?;
            let to = NodeId::from_hex(need("to", f.to)?)?;
            (qty, EventKind::Grant { to })
        }
        other => return Err(FieldError::UnknownKind(other.into()).into()),
    };
    let sku = Sku::new(f.sku)?;
    let id = match f.id {
        Some(i) => EventId::new(i)?,
        None => fresh_id()?,
    };
    let location = match f.location {
        Some(l) => LocationId::new(l)?,
        None => meta.location.clone(),
    };
    let mut req = EventRequest::new(id, location, sku, qty, kind);
    req.policy = f.policy.map(|p| p.parse::<Policy>()).transpose()?;
    req.reference = f.reference.map(str::to_string);
    req.validate()?;
    Ok(req)
}

/// `v`, or the error naming the missing `field`.
fn need<'a>(field: &'static str, v: Option<&'a str>) -> Result<&'a str, FieldError> {
    v.ok_or(FieldError::Missing(field))
}

/// The fields of an event subcommand (`None` for other commands).
pub fn fields(cmd: &Command) -> Option<EventFields<'_>> {
    fn base<'a>(kind: &'a str, sku: &'a str, qty: &'a str, opts: &'a EventOpts) -> EventFields<'a> {
        EventFields {
            kind,
            sku,
            qty,
            id: opts.id.as_deref(),
            location: opts.location.as_deref(),
            reference: opts.reference.as_deref(),
            ..EventFields::default()
        }
    }
    Some(match cmd {
        Command::Receive { sku, qty, opts } => base("receive", sku, qty, opts),
        Command::Return { sku, qty, opts } => base("return", sku, qty, opts),
        Command::Sell {
            sku,
            qty,
            policy,
            opts,
        } => EventFields {
            policy: policy.as_deref(),
            ..base("sell", sku, qty, opts)
        },
        Command::Order {
            sku,
            qty,
            policy,
            opts,
        } => EventFields {
            policy: policy.as_deref(),
            ..base("order", sku, qty, opts)
        },
        Command::Adjust {
            sku,
            delta,
            reason,
            policy,
            opts,
        } => EventFields {
            reason: Some(reason),
            policy: policy.as_deref(),
            ..base("adjust", sku, delta, opts)
        },
        Command::Reserve {
            sku,
            qty,
            reservation,
            opts,
        } => EventFields {
            reservation: Some(reservation),
            ..base("reserve", sku, qty, opts)
        },
        Command::Release {
            sku,
            qty,
            reservation,
            opts,
        } => EventFields {
            reservation: Some(reservation),
            ..base("release", sku, qty, opts)
        },
        Command::Fulfil {
            sku,
            qty,
            reservation,
            opts,
        } => EventFields {
            reservation: Some(reservation),
            ..base("fulfil", sku, qty, opts)
        },
        Command::TransferOut {
            sku,
            qty,
            to,
            transfer,
            opts,
        } => EventFields {
            to: Some(to),
            transfer: Some(transfer),
            ..base("transfer-out", sku, qty, opts)
        },
        Command::TransferIn {
            sku,
            qty,
            from,
            transfer,
            opts,
        } => EventFields {
            from: Some(from),
            transfer: Some(transfer),
            ..base("transfer-in", sku, qty, opts)
        },
        Command::Grant { sku, qty, to, opts } => EventFields {
            to: Some(to),
            ..base("grant", sku, qty, opts)
        },
        _ => return None,
    })
}

/// The request an event subcommand asks for.
pub fn request(cmd: &Command, meta: &NodeMeta) -> Result<EventRequest> {
    let f = fields(cmd).ok_or_else(|| anyhow::anyhow!("not an event command"))?;
    build(&f, meta)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_event_kind_is_a_command_taking_exactly_its_options() {
        let cli = super::super::Cli::command();
        let options = ["policy", "reason", "reservation", "to", "from", "transfer"];
        for kind in EVENT_KINDS {
            let cmd = cli.find_subcommand(kind).expect(kind);
            let takes = options_of(kind).expect(kind);
            for o in options {
                let has = cmd.get_arguments().any(|a| a.get_long() == Some(o));
                assert_eq!(has, takes.contains(&o), "{kind} --{o}");
            }
        }
    }
}
