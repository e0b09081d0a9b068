//! Command-line grammar (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// stocksync: offline-first stock sync for retail store devices.
#[derive(Parser, Debug)]
#[command(name = "stocksync", version, about, long_about = None)]
pub struct Cli {
    /// The node's data directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every event command.
#[derive(Args, Debug, Clone)]
pub struct EventOpts {
    /// Idempotency key: the same id twice is applied once (generated when omitted).
    #[arg(long)]
    pub id: Option<String>,
    /// Free reference for the audit trail (receipt number, order id...).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// The pool's location, when not the node's own.
    #[arg(long)]
    pub location: Option<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a node: key pair and database in --data.
    Init {
        /// Human name of the node, e.g. till-1.
        #[arg(long)]
        node: String,
        /// Home location (store or warehouse code).
        #[arg(long)]
        location: String,
        /// till, store, hub or channel.
        #[arg(long)]
        role: String,
        /// Enrol the new node at once in the fleet of the hub whose data
        /// directory is HUB (on this machine; through the hub's daemon if one runs).
        #[arg(long, value_name = "HUB")]
        join: Option<PathBuf>,
        /// Enrol the new node over the network at the hub's transport
        /// address HOST:PORT, with a one-time token (`fleet token`); needs --token.
        #[arg(
            long,
            value_name = "HOST:PORT",
            conflicts_with = "join",
            requires = "token"
        )]
        hub: Option<String>,
        /// The one-time enrolment token from the hub (`ssenrol1.…`); needs --hub.
        #[arg(long, value_name = "TOKEN", requires = "hub")]
        token: Option<String>,
    },
    /// The fleet authority's commands, run on the hub's data directory (--data HUB).
    Fleet {
        /// Which.
        #[command(subcommand)]
        which: FleetCmd,
    },
    /// A node's side of enrolment by files: make a request, accept the hub's bundle.
    Enrol {
        /// Which.
        #[command(subcommand)]
        which: EnrolCmd,
    },
    /// Show the node's id, name, location and role.
    Info,
    /// Goods in from a supplier.
    Receive {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// A sale at this node.
    Sell {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// strict (refuse beyond rights) or record (accept, record a deficit).
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// An order from an online channel (always strict: it promises stock not in hand).
    Order {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// strict or record.
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// A customer return.
    Return {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// A count, damage or shrinkage correction: DELTA is signed, e.g. -2 or +3.
    Adjust {
        /// SKU.
        sku: String,
        /// Signed change in units.
        #[arg(allow_hyphen_values = true)]
        delta: String,
        /// Reason code (count, damage, shrinkage...).
        #[arg(long)]
        reason: String,
        /// strict or record (default record: a count is a fact).
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Hold units for an order.
    Reserve {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// Reservation id.
        #[arg(long)]
        reservation: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Give held units back.
    Release {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// Reservation id.
        #[arg(long)]
        reservation: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Ship held units.
    Fulfil {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// Reservation id.
        #[arg(long)]
        reservation: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Ship units to another location.
    TransferOut {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// Destination location.
        #[arg(long)]
        to: String,
        /// Transfer id.
        #[arg(long)]
        transfer: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Receive units shipped from another location.
    TransferIn {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// Origin location.
        #[arg(long)]
        from: String,
        /// Transfer id.
        #[arg(long)]
        transfer: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Hand some of this node's rights to another node (by node id).
    Grant {
        /// SKU.
        sku: String,
        /// Units.
        #[arg(allow_hyphen_values = true)]
        qty: String,
        /// Receiver's node id (64 hex digits).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        opts: EventOpts,
    },
    /// Load events from a file of JSON lines or CSV with a header row, one event
    /// per line, in group commits; bad lines are reported by number and skipped.
    ///
    /// Each line has `kind` (an event command's name), `sku`, `qty` (signed for
    /// adjust), `id` (required: importing a file again changes nothing) and the
    /// kind's options named as its flags: location, ref, policy, reason,
    /// reservation, to, from, transfer. Exit code 2 if any line failed.
    Import {
        /// The file, or - for standard input.
        file: PathBuf,
        /// jsonl or csv (default: from the extension .csv, .jsonl, .ndjson or
        /// .json, otherwise from the first line: `{` means JSON lines).
        #[arg(long, value_enum)]
        format: Option<super::import::Format>,
        /// Check every line, in order, against the node's current state (unknown
        /// SKU, rights under strict, reservations, reused ids) as if the earlier
        /// good lines were applied; print the same report and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stock per pool as this node sees it.
    Stock {
        /// Only this SKU.
        sku: Option<String>,
    },
    /// This node's journal for one SKU.
    History {
        /// SKU.
        sku: String,
    },
    /// Re-derive counts from the journal and the changes and check the invariant.
    Verify,
    /// Run the node daemon: hold --data, serve the local HTTP/JSON API (see
    /// docs/daemon.md) until SIGTERM or ctrl-c.
    Node {
        /// A TOML configuration file (examples/node.toml shows every option).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The API's address (loopback unless the file sets allow_remote).
        #[arg(long, value_name = "ADDR")]
        api: Option<std::net::SocketAddr>,
        /// The address the peer transport listens on.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// A peer to connect to, as host:port (repeatable; replaces the file's list).
        #[arg(long = "peer", value_name = "ADDR")]
        peers: Vec<String>,
        /// Do not discover peers by mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// The hub to connect to, as host:port (replaces the file's).
        #[arg(long, value_name = "ADDR")]
        hub: Option<String>,
    },
    /// Whether a daemon runs on --data, and the node's status (through it when it runs).
    Status,
    /// Rebalance a location's rights among its holders (a store manager's action).
    Rebalance {
        /// The location whose pools are rebalanced.
        #[arg(long)]
        location: String,
        /// A SKU to rebalance (repeatable; none: every SKU at the location).
        #[arg(long = "sku", value_name = "SKU")]
        skus: Vec<String>,
        /// How rights are split: by recent sales velocity, or evenly.
        #[arg(long, default_value = "velocity")]
        strategy: String,
        /// Print the plan as a table; grant nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long to wait for other holders' answers (ms).
        #[arg(long, default_value_t = 3000)]
        wait_ms: u64,
    },
    /// Allocate this node's rights above its reserve to the channels and
    /// stores of its `[rebalance] allocate` entries (a hub's action).
    Allocate {
        /// The location whose pools are allocated.
        #[arg(long)]
        location: String,
        /// A SKU to allocate (repeatable; none: every SKU held at the location).
        #[arg(long = "sku", value_name = "SKU")]
        skus: Vec<String>,
        /// Print the allocation; grant nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// A narrated day of a fleet (hub, two stores, a web channel) in one process.
    Demo {
        /// Keep the demo's data directories here instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Leave the fleet up and serve the hub's HTTP API until ctrl-c.
        #[arg(long)]
        keep_running: bool,
    },
    /// Run the deterministic fleet simulator: one seed to replay a failure, or many.
    Sim {
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many consecutive seeds.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Run with a deliberate flaw in the escrow rule (the checker must fail):
        /// over-consume (the default) or grant-unheld.
        #[arg(long, value_name = "FLAW", num_args = 0..=1, default_missing_value = "over-consume")]
        broken_rule: Option<stocksync::sim::RuleFlaw>,
    },
    /// Benchmarks; print figures as JSON with --json.
    Bench {
        /// Which bench.
        #[command(subcommand)]
        which: BenchKind,
    },
    /// Sell one unit at a time, printing each acknowledged event id (crash tests).
    #[command(hide = true)]
    SellLoop {
        /// SKU.
        sku: String,
        /// Prefix of the event ids.
        #[arg(long)]
        prefix: String,
        /// Number of sales per thread.
        #[arg(long)]
        count: u64,
        /// Concurrent callers.
        #[arg(long, default_value_t = 1)]
        threads: u64,
    },
}

/// `stocksync fleet ...`.
#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// Create a fleet: the hub's node in --data (role hub), the fleet key
    /// (fleet.key, never leaves the directory), roster version 1, the hub's
    /// certificate and the CA file.
    Init {
        /// Human name of the hub, e.g. hub.
        #[arg(long)]
        node: String,
        /// The hub's home location.
        #[arg(long)]
        location: String,
    },
    /// Enrol the node of a request file (from `enrol request`; - for standard
    /// input): adds it to the roster and prints its bundle (JSON) on standard output.
    Enrol {
        /// The request file.
        request: PathBuf,
    },
    /// Revoke a member (node id or name) after the last change of it the hub holds.
    Revoke {
        /// The member: its node id (64 hex digits) or its name.
        node: String,
        /// Why (kept in the roster for the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Retire a member (node id or name): revoke it as `revoke` does and name
    /// the member whose rights its remaining rights count as.
    Retire {
        /// The member: its node id (64 hex digits) or its name.
        node: String,
        /// Why (kept in the roster for the audit trail).
        #[arg(long)]
        reason: String,
        /// The heir: an unrevoked member holding every location of NODE.
        #[arg(long)]
        heir: String,
    },
    /// Show the fleet roster the node in --data holds.
    Roster,
    /// Make a one-time enrolment token for one new node (printed once; the
    /// hub keeps only its hash), or list or revoke tokens.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Token {
        /// list or revoke (without one: make a token).
        #[command(subcommand)]
        which: Option<TokenCmd>,
        /// The new node's name.
        #[arg(long, required = true)]
        node: Option<String>,
        /// Its home location.
        #[arg(long, required = true)]
        location: Option<String>,
        /// Its role: till, store, hub or channel.
        #[arg(long, required = true)]
        role: Option<String>,
        /// How long the token may be used: 90s, 30m, 1h (the default), 2d; at most 30d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

/// `stocksync fleet token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// List the tokens: id, entry, expiry, state (unused, used, expired, revoked).
    List,
    /// Revoke an unused token by its id.
    Revoke {
        /// The token's id (from `fleet token list`).
        id: String,
    },
}

/// `stocksync enrol ...`.
#[derive(Subcommand, Debug)]
pub enum EnrolCmd {
    /// Print this node's enrolment request (JSON: id, name, role, location) for the hub.
    Request,
    /// Install a bundle from `fleet enrol` (- for standard input): checks the
    /// certificate is for this node's key and chains to the fleet CA, then
    /// installs the roster, the certificate, the CA and the fleet id.
    Accept {
        /// The bundle file.
        bundle: PathBuf,
    },
}

/// The benches.
#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// One node on the local disk: fsync floor, bare commit, durable sales, restart.
    Local {
        /// Sales of history for the restart measurement.
        #[arg(long, default_value_t = 1_000_000)]
        history: u64,
        /// Samples for the latency figures.
        #[arg(long, default_value_t = 2000)]
        samples: u64,
        /// Directory for the bench databases (a temporary one by default).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The sync protocol over a zero-latency in-memory network: bytes per sale,
    /// anti-entropy bytes when equal, catch-up time of a store.
    Sync,
    /// POST /v1/events through the daemon's API against calling Node::execute
    /// directly, on fresh nodes in one run: sales/s, p50 and p99 latency.
    Api {
        /// Concurrent clients, each in a closed loop.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Measured sales per path (split over the clients and the rounds).
        #[arg(long, default_value_t = 4000)]
        sales: u64,
        /// Directory for the bench nodes (a temporary one by default).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Real QUIC on loopback: round trip and handshake (baseline), a sale to a
    /// LAN peer and the hub, many tills at once, a till back after offline
    /// sales, bytes on the wire per sale.
    Net {
        /// Sales timed one by one (and sold in total by the tills at once).
        #[arg(long, default_value_t = 1000)]
        sales: u64,
        /// Tills selling at once.
        #[arg(long, default_value_t = 20)]
        tills: usize,
        /// Sales made by a till while its link to the hub is down.
        #[arg(long, default_value_t = 20_000)]
        offline_sales: u64,
    },
    /// Real QUIC on loopback: a till out of rights borrows one unit from its
    /// LAN peer and the sale succeeds, against a local sale (baseline); then
    /// a manager's rebalance of a store and its tills (time to settle, bytes).
    Rebalance {
        /// Sales timed (each borrows).
        #[arg(long, default_value_t = 500)]
        samples: u64,
        /// Tills of the rebalanced store.
        #[arg(long, default_value_t = 5)]
        tills: usize,
        /// SKUs of the rebalanced store.
        #[arg(long, default_value_t = 10_000)]
        skus: usize,
    },
    /// Real daemons on loopback: an online order, and a till's grant to the
    /// channel over QUIC, until the channel's webhook has the new available,
    /// against a plain HTTP POST to the same receiver (baseline).
    Channel {
        /// Changes timed per path.
        #[arg(long, default_value_t = 300)]
        samples: u64,
    },
    /// The hub's aggregate: memory and SKU query latency of a generated fleet,
    /// and the ingest of real changes with and without it.
    Hub {
        /// Stores in the generated fleet.
        #[arg(long, default_value_t = 500)]
        stores: usize,
        /// SKUs per store in the generated fleet.
        #[arg(long, default_value_t = 20_000)]
        skus: usize,
    },
    /// Internal: open a node and report its load time and peak memory.
    #[command(hide = true)]
    Restart {
        /// The node's data directory.
        dir: PathBuf,
    },
}
