//! The `stocksync` command line: parses arguments, opens the node, runs one
//! command and maps errors to exit codes (0 done, 2 bad input, 3 refused, 1 other).

mod allocate_cmd;
mod args;
mod bench_api;
mod bench_channel;
mod bench_hub;
mod bench_local;
mod bench_net;
mod bench_sync;
mod daemon_client;
mod daemon_cmd;
mod demo;
pub mod events;
pub mod fleet;
mod import;
mod output;
mod rebalance_cmd;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::Parser;

pub use args::Cli;
use args::{BenchKind, Command, EnrolCmd, FleetCmd, TokenCmd};
use stocksync::data_dir::{self, NodeSpec, Reader, SetupError};
use stocksync::error::{EventError, InputError, NodeError, StoreError};
use stocksync::model::NodeMeta;
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::store::sqlite::{Durability, SqliteStore};

/// Exit code: bad input or usage.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: refused by the escrow rule.
pub const EXIT_REFUSED: i32 = 3;

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let json = cli.json;
    if !matches!(cli.command, Command::Node { .. }) {
        // The daemon installs logging once its configuration is read.
        daemon_cmd::init_logging("warn");
    }
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            let code = exit_code(&e);
            output::error(&e, code, json);
            code
        }
    }
}

/// The exit code for an error: typed errors decide, anything else is 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(r) = e.downcast_ref::<Reported>() {
        return r.code;
    }
    if let Some(f) = e.downcast_ref::<fleet::FleetError>() {
        return f.exit_code();
    }
    if let Some(f) = e.downcast_ref::<daemon_client::ApiFailure>() {
        return f.exit_code();
    }
    if e.downcast_ref::<crate::daemon::config::ConfigError>()
        .is_some()
    {
        return EXIT_BAD_INPUT;
    }
    if let Some(n) = e.downcast_ref::<NodeError>() {
        return match n {
            n if n.is_refusal() => EXIT_REFUSED,
            NodeError::Event(_) => EXIT_BAD_INPUT,
            _ => 1,
        };
    }
    if let Some(ev) = e.downcast_ref::<EventError>() {
        return if matches!(
            ev,
            EventError::InsufficientRights { .. } | EventError::InsufficientAfterBorrow(_)
        ) {
            EXIT_REFUSED
        } else {
            EXIT_BAD_INPUT
        };
    }
    if e.downcast_ref::<InputError>().is_some()
        || e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<events::FieldError>().is_some()
    {
        return EXIT_BAD_INPUT;
    }
    let store = match e.downcast_ref::<SetupError>() {
        Some(SetupError::Input(_)) => return EXIT_BAD_INPUT,
        Some(SetupError::Store(s)) => Some(s),
        Some(_) => return 1,
        None => e.downcast_ref::<StoreError>(),
    };
    if let Some(s) = store {
        return match s {
            StoreError::NotInitialized(_) | StoreError::AlreadyInitialized(_) => EXIT_BAD_INPUT,
            _ => 1,
        };
    }
    1
}

/// A failure whose details the command already printed (its JSON report, say).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Reported {
    message: String,
    code: i32,
}

impl Reported {
    /// A failure already reported, ending the process with exit `code`.
    pub fn new(message: impl Into<String>, code: i32) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }
}

/// A usage mistake the parser cannot see (a missing --data, say).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    cli.data.clone().ok_or_else(|| {
        UsageError("--data DIR is required: the node's data directory".into()).into()
    })
}

/// Opens the store in `dir` for writing (directory lock, key check) without starting a node.
pub fn open_store(dir: &Path) -> Result<SqliteStore> {
    Ok(data_dir::open_store(dir, Durability::Full)?.0)
}

/// Opens the node in `dir` for writing (directory lock, key check).
///
/// Holding the lock proves no daemon runs on `dir`: a runtime file left by
/// one that died is removed.
pub fn open_node(dir: &Path) -> Result<Node> {
    open_node_with(dir, NodeOptions::default())
}

/// [`open_node`] with chosen options (the fleet of a node being enrolled).
pub fn open_node_with(dir: &Path, options: NodeOptions) -> Result<Node> {
    let node = match data_dir::open(dir, options, system_clock()) {
        Ok(n) => n,
        Err(e @ SetupError::Store(StoreError::Locked(_))) => {
            return Err(match crate::daemon::runtime_file::read(dir) {
                Some(d) => anyhow::Error::from(e).context(format!(
                    "a stocksync node daemon (pid {}, API {}) holds this directory: \
                     stop it first for this command",
                    d.pid, d.api
                )),
                None => e.into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = crate::daemon::runtime_file::remove(dir) {
        tracing::warn!(error = %e, "cannot remove a stale daemon runtime file");
    }
    Ok(node)
}

/// Creates a node in `dir`.
pub fn init_node(dir: &Path, name: &str, location: &str, role: &str) -> Result<NodeMeta> {
    let spec = NodeSpec::parse(name, location, role)?;
    Ok(data_dir::init(dir, &spec)?)
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Init {
            node,
            location,
            role,
            join,
            hub,
            token,
        } => {
            let dir = data_dir(&cli)?;
            if let Some(hub) = join {
                return fleet::join(&dir, hub, node, location, role, cli.json);
            }
            if let (Some(hub), Some(token)) = (hub, token) {
                let spec = (node.as_str(), location.as_str(), role.as_str());
                return fleet::join_online(&dir, hub, token, spec, cli.json);
            }
            let meta = init_node(&dir, node, location, role)?;
            output::meta(&meta, cli.json);
            Ok(())
        }
        Command::Fleet { which } => {
            let dir = data_dir(&cli)?;
            match which {
                FleetCmd::Init { node, location } => fleet::init(&dir, node, location, cli.json),
                FleetCmd::Enrol { request } => fleet::enrol(&dir, request),
                FleetCmd::Revoke { node, reason } => fleet::revoke(&dir, node, reason, cli.json),
                FleetCmd::Retire { node, reason, heir } => {
                    fleet::retire(&dir, node, reason, heir, cli.json)
                }
                FleetCmd::Roster => fleet::roster(&dir, cli.json),
                FleetCmd::Token {
                    which,
                    node,
                    location,
                    role,
                    ttl,
                } => match (which, node, location, role) {
                    (Some(TokenCmd::List), ..) => fleet::token_cmd::list(&dir, cli.json),
                    (Some(TokenCmd::Revoke { id }), ..) => {
                        fleet::token_cmd::revoke(&dir, id, cli.json)
                    }
                    (None, Some(n), Some(l), Some(r)) => {
                        fleet::token_cmd::create(&dir, n, l, r, ttl, cli.json)
                    }
                    _ => Err(UsageError(
                        "fleet token needs --node, --location and --role (or list, revoke)".into(),
                    )
                    .into()),
                },
            }
        }
        Command::Enrol { which } => {
            let dir = data_dir(&cli)?;
            match which {
                EnrolCmd::Request => fleet::request(&dir),
                EnrolCmd::Accept { bundle } => fleet::accept(&dir, bundle, cli.json),
            }
        }
        Command::Demo { keep, keep_running } => demo::run(keep.clone(), *keep_running),
        Command::Sim {
            seed,
            seeds,
            broken_rule,
        } => sim(*seed, *seeds, *broken_rule, cli.json),
        Command::Bench { which } => match which {
            BenchKind::Local {
                history,
                samples,
                dir,
            } => bench_local::run(*history, *samples, dir.clone(), cli.json),
            BenchKind::Restart { dir } => bench_local::restart_probe(dir),
            BenchKind::Sync => bench_sync::run(cli.json),
            BenchKind::Api {
                clients,
                sales,
                dir,
            } => bench_api::run(*clients, *sales, dir.clone(), cli.json),
            BenchKind::Net {
                sales,
                tills,
                offline_sales,
            } => {
                let params = bench_net::Params {
                    sales: *sales,
                    tills: *tills,
                    offline_sales: *offline_sales,
                };
                bench_net::run(&params, cli.json)
            }
            BenchKind::Rebalance {
                samples,
                tills,
                skus,
            } => bench_net::rebalance::run(*samples, *tills, *skus, cli.json),
            BenchKind::Hub { stores, skus } => bench_hub::run(*stores, *skus, cli.json),
            BenchKind::Channel { samples } => bench_channel::run_bench(*samples, cli.json),
        },
        Command::Info => {
            let dir = data_dir(&cli)?;
            output::meta(&Reader::open(&dir)?.meta()?, cli.json);
            Ok(())
        }
        Command::Stock { sku } => daemon_cmd::stock(&data_dir(&cli)?, sku.as_deref(), cli.json),
        Command::Status => daemon_cmd::status(&data_dir(&cli)?, cli.json),
        Command::Allocate {
            location,
            skus,
            dry_run,
        } => allocate_cmd::run(&data_dir(&cli)?, location, skus, *dry_run, cli.json),
        Command::Rebalance {
            location,
            skus,
            strategy,
            dry_run,
            wait_ms,
        } => rebalance_cmd::run(
            &data_dir(&cli)?,
            &rebalance_cmd::RebalanceArgs {
                location,
                skus,
                strategy,
                dry_run: *dry_run,
                wait_ms: *wait_ms,
            },
            cli.json,
        ),
        Command::Node {
            config,
            api,
            listen,
            peers,
            no_mdns,
            hub,
        } => {
            let flags = daemon_cmd::NodeFlags {
                config: config.as_deref(),
                api: *api,
                listen: *listen,
                peers,
                no_mdns: *no_mdns,
                hub: hub.as_deref(),
            };
            daemon_cmd::node(&data_dir(&cli)?, &flags)
        }
        Command::History { sku } => {
            let dir = data_dir(&cli)?;
            stocksync::model::Sku::new(sku.as_str())?;
            output::history(&Reader::open(&dir)?.history(sku)?, cli.json);
            Ok(())
        }
        Command::Verify => {
            let dir = data_dir(&cli)?;
            let report = Reader::open(&dir)?.verify()?;
            output::verify(&report, cli.json);
            if report.ok {
                Ok(())
            } else {
                Err(Reported::new("verify found problems", 1).into())
            }
        }
        Command::Import {
            file,
            format,
            dry_run,
        } => {
            let dir = data_dir(&cli)?;
            import::command(&dir, file, *format, *dry_run, cli.json)
        }
        Command::SellLoop {
            sku,
            prefix,
            count,
            threads,
        } => {
            let dir = data_dir(&cli)?;
            events::sell_loop(&dir, sku, prefix, *count, *threads)
        }
        other => {
            let dir = data_dir(&cli)?;
            if let Some(fields) = events::fields(other) {
                if daemon_cmd::event(&dir, &fields, cli.json)? {
                    return Ok(());
                }
            }
            let node = open_node(&dir)?;
            let req = events::request(other, node.meta())?;
            let outcome = node.execute(req).map_err(anyhow::Error::from);
            node.shutdown();
            output::outcome(&outcome?, cli.json);
            Ok(())
        }
    }
}

/// Runs seeds `seed..seed + seeds`; fails on the first failing seed, printing its replay line.
fn sim(seed: u64, seeds: u64, flaw: Option<stocksync::sim::RuleFlaw>, as_json: bool) -> Result<()> {
    if std::env::var_os("STOCKSYNC_LOG").is_none() {
        // The simulator injects store faults by design: their error logs are
        // noise unless STOCKSYNC_LOG asks for them.
        let quiet = tracing::subscriber::NoSubscriber::default();
        return tracing::subscriber::with_default(quiet, || sim_seeds(seed, seeds, flaw, as_json));
    }
    sim_seeds(seed, seeds, flaw, as_json)
}

fn sim_seeds(
    seed: u64,
    seeds: u64,
    flaw: Option<stocksync::sim::RuleFlaw>,
    as_json: bool,
) -> Result<()> {
    use stocksync::sim::{run, SimConfig};
    for s in seed..seed.saturating_add(seeds) {
        let config = SimConfig {
            flaw,
            ..SimConfig::standard(s)
        };
        match run(&config) {
            Ok(r) if as_json => println!(
                "{}",
                serde_json::json!({
                    "seed": s, "nodes": config.nodes(), "sqlite_nodes": r.sqlite_nodes,
                    "acked": r.counts.acked, "refused": r.counts.refused,
                    "failed": r.counts.failed, "multi_event_groups": r.counts.multi_groups,
                    "repeats_replayed": r.counts.repeats_replayed,
                    "durable_unacknowledged": r.counts.durable_unacked,
                    "deficits": r.counts.deficits, "crashes": r.crashes,
                    "disk_failures": r.faults.disk, "crashes_before_commit": r.faults.crash_before,
                    "crashes_after_commit": r.faults.crash_after,
                    "converge_ms": r.converge_ms, "bytes": r.bytes,
                    "attacker": config.attacker, "equivocations": r.attacks.equivocations,
                    "forgeries": r.attacks.forgeries, "floods": r.attacks.floods,
                    "attacks_refused": r.attacks_refused
                })
            ),
            Ok(r) => println!(
                "seed {s}: ok, {} nodes ({} on SQLite), {} acknowledged, {} refused, {} failed, \
                 {} multi-event groups, {} repeats replayed, {} durable unacknowledged, \
                 {} deficits, {} crashes, faults: {} disk, {} crash before, {} crash after \
                 commit, converged {} ms after heal, {} bytes sent{}",
                config.nodes(),
                r.sqlite_nodes,
                r.counts.acked,
                r.counts.refused,
                r.counts.failed,
                r.counts.multi_groups,
                r.counts.repeats_replayed,
                r.counts.durable_unacked,
                r.counts.deficits,
                r.crashes,
                r.faults.disk,
                r.faults.crash_before,
                r.faults.crash_after,
                r.converge_ms,
                r.bytes,
                if config.attacker {
                    format!(
                        "; attacker: {} equivocations, {} forgeries, {} flood messages, \
                         {} refusals reported",
                        r.attacks.equivocations,
                        r.attacks.forgeries,
                        r.attacks.floods,
                        r.attacks_refused
                    )
                } else {
                    String::new()
                }
            ),
            Err(f) => return Err(anyhow!("{f}")),
        }
    }
    Ok(())
}
