//! Online enrolment with a token: the hub's [`EnrolService`] (run by its
//! daemon on the QUIC listener) and the new node's `init --hub --token`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use stocksync::data_dir::{self, NodeSpec};
use stocksync::fleet::FleetId;
use stocksync::identity::Identity;
use stocksync::model::NodeMeta;
use stocksync::net::enrol::client::{self, EnrolError};
use stocksync::net::enrol::server::EnrolService;
use stocksync::net::enrol::{
    admit, secret_hash, Admission, Applicant, EnrolRequest as Wire, Grant, RefusalCode, Refused,
    Token,
};
use stocksync::node::Node;
use stocksync::store::sqlite::DB_FILE;
use stocksync::StoreError;

use super::token_cmd::now_s;
use super::tokens::TokenStore;
use super::{install, report_member, Bundle, EnrolRequest, FleetError, Hub, EDITS};

/// How long `init --hub` waits for the whole exchange.
const ENROL_TIMEOUT: Duration = Duration::from_secs(15);

/// The hub's decision on a token enrolment: the token checks
/// ([`admit`]), an atomic claim, then the same roster edit as `fleet enrol`.
pub struct TokenEnrolment {
    node: Node,
    dir: PathBuf,
    fleet: FleetId,
}

impl TokenEnrolment {
    /// The service of the hub `node` whose data directory is `dir`, in `fleet`.
    pub fn new(node: Node, dir: &Path, fleet: FleetId) -> Self {
        Self {
            node,
            dir: dir.to_path_buf(),
            fleet,
        }
    }

    fn unavailable(e: impl std::fmt::Display) -> Refused {
        Refused::new(RefusalCode::Unavailable, format!("{e:#}"))
    }

    /// Enrols with `hub` after the token checks, releasing the claim on failure.
    fn enrol_at(&self, hub: &Hub, req: &Wire) -> Result<Grant, Refused> {
        let store = TokenStore::open(&self.dir).map_err(Self::unavailable)?;
        let hash = secret_hash(&req.secret);
        let record = store.get(&hash).map_err(Self::unavailable)?;
        let admission = admit(req, &self.fleet, record.as_ref(), now_s())?;
        if admission == Admission::Claim
            && !store
                .claim(&hash, req.node, now_s())
                .map_err(Self::unavailable)?
        {
            return Err(Refused::new(
                RefusalCode::TokenUsed,
                "the token was used already",
            ));
        }
        let asked = EnrolRequest {
            node_id: req.node.to_hex(),
            name: req.who.name.clone(),
            role: req.who.role.clone(),
            location: req.who.location.clone(),
        };
        match hub.enrol_parts(&asked) {
            Ok((cert, roster)) => Ok(Grant {
                certificate: cert.der().to_vec(),
                ca: hub.ca().der().to_vec(),
                roster,
            }),
            Err(e) => {
                if admission == Admission::Claim {
                    if let Err(r) = store.release(&hash, req.node) {
                        tracing::error!(error = %r, "cannot release a token claim");
                    }
                }
                Err(match e.downcast_ref::<FleetError>() {
                    Some(f @ (FleetError::Invalid(_) | FleetError::WrongKey { .. })) => {
                        Refused::new(RefusalCode::Conflict, f.to_string())
                    }
                    _ => Self::unavailable(e),
                })
            }
        }
    }
}

impl EnrolService for TokenEnrolment {
    fn enrol(&self, req: &Wire, from: SocketAddr) -> Result<Grant, Refused> {
        let _one = EDITS.lock().unwrap_or_else(|e| e.into_inner());
        let span =
            tracing::info_span!("enrol", node = %self.node.id(), peer = %from, new = %req.node);
        let _in = span.enter();
        let hub = Hub::of_node(self.node.clone(), &self.dir).map_err(Self::unavailable)?;
        self.enrol_at(&hub, req)
    }
}

/// The exit code of a failed online enrolment: 2 when the token, the hub's
/// identity or the request is at fault, 1 when the network is.
pub fn enrol_exit_code(e: &EnrolError) -> i32 {
    match e {
        EnrolError::Unreachable { .. } | EnrolError::Protocol { .. } | EnrolError::Net(_) => 1,
        _ => crate::cli::EXIT_BAD_INPUT,
    }
}

/// `init --hub HOST:PORT --token TOKEN`: makes a key in memory, enrols it
/// with the hub over QUIC, and only then creates the node in `dir` and
/// installs what the hub sent (the same checks and files as `enrol accept`).
/// Any failure before that leaves `dir` untouched.
pub fn join_online(
    dir: &Path,
    hub: &str,
    token: &str,
    spec: (&str, &str, &str),
    as_json: bool,
) -> Result<()> {
    let token: Token = token
        .parse()
        .map_err(|e| FleetError::Invalid(format!("--token: {e}")))?;
    let (name, location, role) = spec;
    let spec = NodeSpec::parse(name, location, role)?;
    if dir.join(DB_FILE).exists() {
        return Err(StoreError::AlreadyInitialized(dir.display().to_string()).into());
    }
    let addr = hub
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| FleetError::Invalid(format!("--hub {hub}: not a HOST:PORT address")))?;
    let identity = Identity::generate()?;
    let who = Applicant {
        name: spec.name.clone(),
        location: spec.location.to_string(),
        role: spec.role.as_str().to_string(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let enrolled = runtime
        .block_on(client::enrol(addr, &token, &identity, who, ENROL_TIMEOUT))
        .map_err(FleetError::from)?;
    let meta = NodeMeta {
        id: identity.node_id(),
        name: spec.name.clone(),
        location: spec.location.clone(),
        role: spec.role,
    };
    let bundle = Bundle::new(&enrolled.ca, &enrolled.certificate, &enrolled.roster);
    bundle.check(&meta)?;
    data_dir::init_with_identity(dir, &spec, &identity)?;
    let (meta, version) = install(dir, &bundle)?;
    report_member(dir, &meta, version, as_json)
}
