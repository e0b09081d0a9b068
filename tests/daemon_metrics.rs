//! `GET /metrics` on the real daemon: the exposition parses strictly (every
//! line a comment, blank or `name{labels} value`, every sample's family
//! typed once), the event counters move by exactly what was posted (API and
//! the command line through the daemon), deficits are summed per location,
//! and the token is needed unless `[api] metrics_without_token = true`.

#[allow(dead_code)]
#[path = "daemon_api/harness.rs"]
mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};

use harness::{cli, fresh, Daemon};

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Parses an exposition strictly; panics on the first line that is not
/// valid text format 0.0.4 (or breaks the one-family-one-TYPE rule).
fn parse(text: &str) -> HashMap<Series, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut out = HashMap::new();
    for (no, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", no + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.trim_start().splitn(3, ' ');
            match words.next() {
                Some("TYPE") => {
                    let name = words.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(valid_name(name), "{}", at());
                    let kind = words.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{}",
                        at()
                    );
                    let fresh = typed.insert(name.into(), kind.into()).is_none();
                    assert!(fresh, "TYPE twice: {}", at());
                }
                Some("HELP") => {
                    let name = words.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(valid_name(name), "{}", at());
                    assert!(helped.insert(name.into()), "HELP twice: {}", at());
                    assert!(!typed.contains_key(name), "HELP after TYPE: {}", at());
                }
                _ => {} // a plain comment
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{}", at()));
        let name = &line[..name_end];
        assert!(valid_name(name), "{}", at());
        assert!(typed.contains_key(name), "sample without TYPE: {}", at());
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, tail) = parse_labels(after).unwrap_or_else(|| panic!("{}", at()));
            labels = parsed;
            rest = tail;
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{}", at()));
        // No timestamp is written; a value alone follows.
        let v: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {}", at())),
        };
        labels.sort();
        let fresh = out.insert((name.to_string(), labels), v).is_none();
        assert!(fresh, "series twice: {}", at());
    }
    out
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut seen = HashSet::new();
    loop {
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let key = &s[..eq];
        if !valid_name(key) || key.contains(':') || !seen.insert(key.to_string()) {
            return None;
        }
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                '\n' => return None,
                c => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = &s[end + 1..];
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// `GET /metrics` with `token`: status, content type, body.
fn scrape(d: &Daemon, token: Option<&str>) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("{}/metrics", d.base));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut r = req.call().expect("GET /metrics");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.body_mut().read_to_string().expect("body");
    (r.status().as_u16(), ct, body)
}

/// The parsed exposition, with the token.
fn metrics(d: &Daemon) -> HashMap<Series, f64> {
    let (status, ct, body) = scrape(d, Some(&d.token));
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&body)
}

/// Every `stocksync_events_total` series, keyed by (kind, outcome).
fn events(m: &HashMap<Series, f64>) -> BTreeMap<(String, String), f64> {
    m.iter()
        .filter(|((n, _), _)| n == "stocksync_events_total")
        .map(|((_, l), v)| {
            let get = |k: &str| {
                l.iter()
                    .find(|(lk, _)| lk == k)
                    .map(|(_, v)| v.clone())
                    .expect("label")
            };
            ((get("kind"), get("outcome")), *v)
        })
        .collect()
}

fn one(m: &HashMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    m.get(&(name.to_string(), l)).copied()
}

#[test]
fn the_counters_move_by_exactly_what_was_posted() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    let before = metrics(&d);
    let base = events(&before);
    assert_eq!(base.len(), 11 * 5, "every kind × outcome, zeros included");
    assert!(base.values().all(|v| *v == 0.0), "{base:?}");

    let post = |body: &str, want: u16| {
        let (s, b) = d.post(body);
        assert_eq!(s, want, "{body}: {b}");
    };
    post(r#"{"kind":"receive","sku":"A","qty":10,"id":"r1"}"#, 201);
    post(r#"{"kind":"sell","sku":"A","qty":3,"id":"s1"}"#, 201);
    post(r#"{"kind":"sell","sku":"A","qty":3,"id":"s1"}"#, 200); // replayed
    let (s, b) = d.post(r#"{"kind":"sell","sku":"A","qty":99,"id":"s2"}"#);
    assert_eq!(s, 409, "refused: {b}");
    assert_eq!(b["error"]["code"], "insufficient_rights", "{b}");
    // Units in hand: accepted beyond rights (7), a deficit of 2 recorded.
    post(
        r#"{"kind":"sell","sku":"A","qty":9,"id":"s3","policy":"record"}"#,
        201,
    );
    let (s, _) = d.post(r#"{"kind":"sell","sku":"NEVER","qty":1,"id":"s4"}"#);
    assert!(s >= 400, "an unknown SKU is refused");
    // The command line goes through the daemon and counts the same way.
    let out = cli(&dir, &["receive", "A", "5", "--id", "r2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = metrics(&d);
    let moved: BTreeMap<_, _> = events(&after)
        .into_iter()
        .filter(|(k, v)| *v != base[k])
        .collect();
    let want: BTreeMap<(String, String), f64> = [
        (("receipt", "applied"), 2.0),
        (("sale", "applied"), 2.0),
        (("sale", "replayed"), 1.0),
        (("sale", "refused"), 1.0),
        (("sale", "invalid"), 1.0),
    ]
    .into_iter()
    .map(|((k, o), v)| ((k.to_string(), o.to_string()), v))
    .collect();
    assert_eq!(moved, want);
    // The receipt of 5 covered the deficit of 2: none left.
    assert_eq!(
        one(&after, "stocksync_deficit_units", &[("location", "S1")]),
        Some(0.0)
    );
    assert_eq!(one(&after, "stocksync_peers_connected", &[]), Some(0.0));
    assert_eq!(
        one(
            &after,
            "stocksync_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(one(&after, "stocksync_transport_running", &[]), Some(0.0));
    assert!(one(&after, "stocksync_uptime_seconds", &[]).is_some_and(|u| u >= 0.0));
    // Every family is named for the project.
    assert!(after.keys().all(|(n, _)| n.starts_with("stocksync_")));
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_deficit_shows_per_location() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    for (i, sku) in ["A", "B"].iter().enumerate() {
        let (s, b) = d.post(&format!(
            r#"{{"kind":"receive","sku":"{sku}","qty":2,"id":"r{i}"}}"#
        ));
        assert_eq!(s, 201, "{b}");
        let (s, b) = d.post(&format!(
            r#"{{"kind":"sell","sku":"{sku}","qty":5,"id":"s{i}","policy":"record"}}"#
        ));
        assert_eq!(s, 201, "{b}");
    }
    let m = metrics(&d);
    // 3 short on each SKU, one series for the location.
    assert_eq!(
        one(&m, "stocksync_deficit_units", &[("location", "S1")]),
        Some(6.0)
    );
    let series = m
        .keys()
        .filter(|(n, _)| n == "stocksync_deficit_units")
        .count();
    assert_eq!(series, 1);
}

#[test]
fn the_token_is_needed_unless_the_option_opens_metrics() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    assert_eq!(scrape(&d, None).0, 401);
    assert_eq!(scrape(&d, Some("wrong")).0, 401);
    assert_eq!(d.terminate(), Some(0));

    let cfg = dir.with_extension("toml");
    std::fs::write(&cfg, "[api]\nmetrics_without_token = true\n").expect("config");
    let d = Daemon::start_with(&dir, &["--config", cfg.to_str().expect("utf-8 path")]);
    let (status, ct, body) = scrape(&d, None);
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!parse(&body).is_empty());
    // Only /metrics opens: the rest still needs the token.
    assert_eq!(d.get("/v1/status", None).0, 401);
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn the_parser_is_strict() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n\n";
    assert_eq!(parse(ok).len(), 1);
    for bad in [
        "a 1\n",                                  // no TYPE
        "# TYPE a gauge\na{k=\"v} 1\n",           // unterminated value
        "# TYPE a gauge\na{k=v} 1\n",             // unquoted
        "# TYPE a gauge\na 1x\n",                 // bad number
        "# TYPE a gauge\na 1\na 2\n",             // same series twice
        "# TYPE a gauge\n# TYPE a gauge\n",       // TYPE twice
        "# TYPE a gauge\na{k=\"1\",k=\"2\"} 1\n", // label twice
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}
