//! Fleet enrolment on the command line, through the real binary: `fleet
//! init`, `init --join`, the request/enrol/accept file flow, `fleet revoke`,
//! `fleet roster`, and what each refuses.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stocksync");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run stocksync")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn roster(dir: &Path) -> Value {
    serde_json::from_str(&ok(&["fleet", "roster", "--data", p(dir), "--json"])).expect("JSON")
}

fn member<'a>(roster: &'a Value, name: &str) -> &'a Value {
    roster["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {roster}"))
}

fn fleet_init(dir: &Path) -> Value {
    serde_json::from_str(&ok(&[
        "fleet",
        "init",
        "--data",
        p(dir),
        "--node",
        "hub",
        "--location",
        "HQ",
        "--json",
    ]))
    .expect("JSON")
}

#[test]
fn fleet_init_makes_a_hub_with_its_key_certificate_and_roster_and_refuses_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let made = fleet_init(&hub);
    assert_eq!(made["role"], "hub");
    for f in [
        "fleet.key",
        "fleet.id",
        "fleet-ca.pem",
        "node-cert.pem",
        "node.key",
    ] {
        assert!(hub.join(f).exists(), "{f} missing");
    }
    for secret in ["fleet.key", "node.key"] {
        let mode = std::fs::metadata(hub.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    let fleet = std::fs::read_to_string(hub.join("fleet.id")).unwrap();
    assert_eq!(fleet.trim(), made["fleet"].as_str().unwrap());
    let r = roster(&hub);
    assert_eq!(
        (r["version"].as_u64(), r["fleet"].as_str()),
        (Some(1), Some(fleet.trim()))
    );
    let h = member(&r, "hub");
    assert_eq!(
        (h["role"].as_str(), &h["locations"][0]),
        (Some("hub"), &Value::from("HQ"))
    );
    assert_eq!(h["node_id"], made["node_id"]);

    // Twice: refused, the fleet key untouched.
    let key = std::fs::read(hub.join("fleet.key")).unwrap();
    let again = run(&[
        "fleet",
        "init",
        "--data",
        p(&hub),
        "--node",
        "hub",
        "--location",
        "HQ",
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a fleet"));
    assert_eq!(std::fs::read(hub.join("fleet.key")).unwrap(), key);
    assert_eq!(roster(&hub)["version"], 1);
    // The key is never printed.
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!made.to_string().contains(&key_hex));
    assert!(!ok(&["fleet", "roster", "--data", p(&hub)]).contains(&key_hex));
}

#[test]
fn join_at_once_enrols_a_till_and_bumps_the_roster() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub, till) = (tmp.path().join("hub"), tmp.path().join("till-1"));
    let made = fleet_init(&hub);
    let joined: Value = serde_json::from_str(&ok(&[
        "init",
        "--data",
        p(&till),
        "--node",
        "till-1",
        "--location",
        "S1",
        "--role",
        "till",
        "--join",
        p(&hub),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (joined["fleet"].clone(), joined["roster_version"].as_u64()),
        (made["fleet"].clone(), Some(2))
    );
    for f in ["fleet.id", "fleet-ca.pem", "node-cert.pem", "node.key"] {
        assert!(till.join(f).exists(), "{f} missing");
    }
    assert!(
        !till.join("fleet.key").exists(),
        "the fleet key never leaves the hub"
    );
    assert_eq!(
        std::fs::read(till.join("fleet-ca.pem")).unwrap(),
        std::fs::read(hub.join("fleet-ca.pem")).unwrap()
    );
    for dir in [&hub, &till] {
        let r = roster(dir);
        assert_eq!(r["version"], 2, "{}", dir.display());
        let t = member(&r, "till-1");
        assert_eq!(
            (t["role"].as_str(), t["node_id"].clone()),
            (Some("till"), joined["node_id"].clone())
        );
        assert_eq!(t["locations"][0], "S1");
    }
    // The enrolled till's events are checked against the roster: its own location is fine.
    ok(&["--data", p(&till), "receive", "TSHIRT-M", "4", "--id", "r1"]);
    // A location outside its roster entry is refused by the roster.
    let out = run(&[
        "--data",
        p(&till),
        "receive",
        "TSHIRT-M",
        "4",
        "--location",
        "S9",
        "--id",
        "r2",
    ]);
    assert!(!out.status.success());
    // A join with the same name again is refused (names are unique among members).
    let again = run(&[
        "init",
        "--data",
        p(&tmp.path().join("x")),
        "--node",
        "till-1",
        "--location",
        "S1",
        "--role",
        "till",
        "--join",
        p(&hub),
    ]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(roster(&hub)["version"], 2);
}

#[test]
fn the_file_flow_enrols_and_a_bundle_for_another_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    fleet_init(&hub);
    let (t1, t2) = (tmp.path().join("t1"), tmp.path().join("t2"));
    for (dir, name, loc) in [(&t1, "till-1", "S1"), (&t2, "till-2", "S2")] {
        ok(&[
            "init",
            "--data",
            p(dir),
            "--node",
            name,
            "--location",
            loc,
            "--role",
            "till",
        ]);
    }
    // till-1 is enrolled at the hub first (its bundle is not installed yet),
    // so till-2's roster lists till-1: only the key check can refuse it there.
    let req1 = tmp.path().join("till-1.req");
    std::fs::write(&req1, ok(&["enrol", "request", "--data", p(&t1)])).unwrap();
    ok(&["fleet", "enrol", "--data", p(&hub), p(&req1)]);
    // till-2: request, enrol at the hub, accept.
    let req = ok(&["enrol", "request", "--data", p(&t2)]);
    let req_json: Value = serde_json::from_str(&req).unwrap();
    assert_eq!(
        (req_json["name"].as_str(), req_json["role"].as_str()),
        (Some("till-2"), Some("till"))
    );
    let req_file = tmp.path().join("till-2.req");
    std::fs::write(&req_file, &req).unwrap();
    let bundle = ok(&["fleet", "enrol", "--data", p(&hub), p(&req_file)]);
    let bundle_file = tmp.path().join("till-2.bundle");
    std::fs::write(&bundle_file, &bundle).unwrap();
    assert!(!bundle.contains("PRIVATE"), "a bundle holds no secret");

    // The bundle is till-2's: till-1 refuses it and installs nothing.
    let wrong = run(&["enrol", "accept", "--data", p(&t1), p(&bundle_file)]);
    assert_eq!(wrong.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&wrong.stderr);
    assert!(msg.contains("certificate is for node"), "{msg}");
    for f in ["fleet.id", "node-cert.pem", "fleet-ca.pem"] {
        assert!(!t1.join(f).exists(), "{f} installed from a refused bundle");
    }
    // A bundle whose certificate was swapped for another fleet's is refused too.
    let other = tmp.path().join("other");
    fleet_init(&other);
    let mut forged: Value = serde_json::from_str(&bundle).unwrap();
    forged["ca"] = Value::from(std::fs::read_to_string(other.join("fleet-ca.pem")).unwrap());
    let forged_file = tmp.path().join("forged.bundle");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let out = run(&["enrol", "accept", "--data", p(&t2), p(&forged_file)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!t2.join("fleet.id").exists());

    // till-2 accepts its own.
    let accepted: Value = serde_json::from_str(&ok(&[
        "enrol",
        "accept",
        "--data",
        p(&t2),
        p(&bundle_file),
        "--json",
    ]))
    .unwrap();
    assert_eq!(accepted["roster_version"], 3);
    assert_eq!(roster(&t2)["version"], 3);
    assert_eq!(member(&roster(&t2), "till-2")["locations"][0], "S2");
    // Accepting the same bundle again changes nothing and succeeds.
    ok(&["enrol", "accept", "--data", p(&t2), p(&bundle_file)]);
    // Standard input works for the request.
    let out = Command::new(BIN)
        .args(["fleet", "enrol", "--data", p(&hub), "-"])
        .stdin(std::fs::File::open(&req_file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        roster(&hub)["version"],
        3,
        "a repeated request changes no roster"
    );
    // A node of another fleet refuses a bundle of this one, even its own.
    let req_o = tmp.path().join("o.req");
    let o = tmp.path().join("o");
    ok(&[
        "init",
        "--data",
        p(&o),
        "--node",
        "till-o",
        "--location",
        "S5",
        "--role",
        "till",
        "--join",
        p(&other),
    ]);
    std::fs::write(&req_o, ok(&["enrol", "request", "--data", p(&o)])).unwrap();
    let b_o = tmp.path().join("o.bundle");
    std::fs::write(&b_o, ok(&["fleet", "enrol", "--data", p(&hub), p(&req_o)])).unwrap();
    let out = run(&["enrol", "accept", "--data", p(&o), p(&b_o)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already belongs to fleet"));
}

#[test]
fn revoke_bumps_the_version_and_records_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub, till) = (tmp.path().join("hub"), tmp.path().join("till-1"));
    fleet_init(&hub);
    ok(&[
        "init",
        "--data",
        p(&till),
        "--node",
        "till-1",
        "--location",
        "S1",
        "--role",
        "till",
        "--join",
        p(&hub),
    ]);
    let done: Value = serde_json::from_str(&ok(&[
        "fleet",
        "revoke",
        "--data",
        p(&hub),
        "till-1",
        "--reason",
        "stolen",
        "--json",
    ]))
    .unwrap();
    assert_eq!(done["roster_version"], 3);
    let r = roster(&hub);
    assert_eq!(r["version"], 3);
    let t = member(&r, "till-1");
    assert_eq!(t["revoked"]["reason"], "stolen");
    assert_eq!(
        t["revoked"]["after"],
        serde_json::json!({"epoch": 0, "seq": 0})
    );
    // Unknown member, the hub itself, a non-hub directory: refused, nothing changed.
    for (dir, target) in [(&hub, "till-9"), (&hub, "hub"), (&till, "hub")] {
        let out = run(&["fleet", "revoke", "--data", p(dir), target, "--reason", "x"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(roster(&hub)["version"], 3);
    // A revoked node cannot enrol again with the same key.
    let req = tmp.path().join("t.req");
    std::fs::write(&req, ok(&["enrol", "request", "--data", p(&till)])).unwrap();
    let out = run(&["fleet", "enrol", "--data", p(&hub), p(&req)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn retire_names_an_heir_at_the_same_store_and_refuses_one_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    fleet_init(&hub);
    for (name, role) in [("till-1", "till"), ("store-1", "store")] {
        let dir = tmp.path().join(name);
        ok(&[
            "init",
            "--data",
            p(&dir),
            "--node",
            name,
            "--location",
            "S1",
            "--role",
            role,
            "--join",
            p(&hub),
        ]);
    }
    // The hub (at HQ only) cannot inherit a till of S1; a till is not its own heir.
    for heir in ["hub", "till-1", "nobody"] {
        let out = run(&[
            "fleet",
            "retire",
            "--data",
            p(&hub),
            "till-1",
            "--reason",
            "x",
            "--heir",
            heir,
        ]);
        assert_eq!(out.status.code(), Some(2), "{heir}");
    }
    assert_eq!(roster(&hub)["version"], 3);
    let done: Value = serde_json::from_str(&ok(&[
        "fleet",
        "retire",
        "--data",
        p(&hub),
        "till-1",
        "--reason",
        "stolen",
        "--heir",
        "store-1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(done["roster_version"], 4);
    let r = roster(&hub);
    let store_id = member(&r, "store-1")["node_id"].clone();
    assert_eq!(done["heir"], store_id);
    let t = member(&r, "till-1");
    assert_eq!(t["revoked"]["reason"], "stolen");
    assert_eq!(t["heir"], store_id);
    let text = ok(&["fleet", "roster", "--data", p(&hub)]);
    assert!(text.contains("RETIRED after 0/0 to"), "{text}");
}
