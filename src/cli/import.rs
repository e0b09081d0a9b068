//! `stocksync import`: events from a file of JSON lines or CSV, streamed line by
//! line into group commits. A bad line is reported by its number and changes
//! nothing; the good lines go in.

mod lines;
mod sink;

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::events;
use super::{Reported, UsageError, EXIT_BAD_INPUT};
use lines::shown;
pub use lines::Format;
use lines::{read_line, Line, Parsed, Parser, MAX_LINE};
use sink::{DryRun, Live, Sink};
use stocksync::model::NodeMeta;
use stocksync::node::Node;

/// Events submitted before their answers are awaited: one group commit's worth.
const IN_FLIGHT: usize = 1024;
/// Failures listed in a report; all of them are counted.
const MAX_LISTED: usize = 1000;

/// One line that failed, and why.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// Its line number in the file, from 1 (blank lines and the header count).
    pub line: u64,
    /// Its `id` field, when it could be read.
    pub id: Option<String>,
    /// Why it was not applied.
    pub reason: String,
}

/// What an import did (in a dry run: what it would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// True when nothing was written.
    pub dry_run: bool,
    /// Event lines read (blank lines and the CSV header are not counted).
    pub lines_read: u64,
    /// Lines recorded as new events.
    pub applied: u64,
    /// Lines whose id was already recorded with the same content: nothing changed.
    pub replayed: u64,
    /// Lines refused.
    pub failed: u64,
    /// Failures by line number (at most 1000 listed).
    pub failures: Vec<Failure>,
    /// Failures counted but not listed.
    pub failures_not_listed: u64,
    /// Why the import stopped before the end (storage or read failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Report {
    fn fail(&mut self, line: u64, id: Option<String>, reason: String) {
        self.failed += 1;
        if self.failures.len() < MAX_LISTED {
            self.failures.push(Failure { line, id, reason });
        } else {
            self.failures_not_listed += 1;
        }
    }
}

/// A one-line counter on stderr, redrawn at most ten times a second.
struct Progress {
    on: bool,
    last: Instant,
}

impl Progress {
    fn tick(&mut self, r: &Report) {
        if self.on && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            let (a, p, f) = (r.applied, r.replayed, r.failed);
            eprint!(
                "\r{} lines read: {a} applied, {p} replayed, {f} failed",
                r.lines_read
            );
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

/// Reads every line of `input` and hands each good one to `sink`, in order.
fn run(
    input: &mut dyn BufRead,
    format: Option<Format>,
    meta: &NodeMeta,
    sink: &mut dyn Sink,
    progress: bool,
) -> Result<Report> {
    let mut report = Report::default();
    let mut parser = Parser {
        format,
        columns: None,
    };
    let mut progress = Progress {
        on: progress,
        last: Instant::now(),
    };
    let (mut buf, mut number) = (Vec::new(), 0u64);
    while report.stopped.is_none() {
        let line = match read_line(input, &mut buf) {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                report.stopped = Some(format!("reading the input after line {number}: {e}"));
                break;
            }
        };
        number += 1;
        if number % 256 == 0 {
            progress.tick(&report);
        }
        let parsed = match (line, std::str::from_utf8(&buf)) {
            (Line::TooLong(n), _) => {
                let reason = format!("line is {n} bytes long; the maximum is {MAX_LINE}");
                Parsed::Bad(None, reason)
            }
            (Line::Text, Err(_)) => Parsed::Bad(None, "not valid UTF-8".into()),
            (Line::Text, Ok(text)) if number == 1 => {
                parser.parse(text.strip_prefix('\u{feff}').unwrap_or(text))?
            }
            (Line::Text, Ok(text)) => parser.parse(text)?,
        };
        let values = match parsed {
            Parsed::Skip => continue,
            Parsed::Bad(id, reason) => {
                report.lines_read += 1;
                report.fail(number, id, reason);
                continue;
            }
            Parsed::Values(v) => v,
        };
        report.lines_read += 1;
        let built = values
            .fields()
            .map_err(anyhow::Error::from)
            .and_then(|f| events::build(&f, meta));
        match built {
            Ok(req) => {
                if let Err(e) = sink.take(number, req, &mut report) {
                    report.stopped = Some(format!("at line {number}: {e}"));
                }
            }
            Err(e) => report.fail(number, values.id(), format!("{e:#}")),
        }
    }
    if let Err(e) = sink.flush(&mut report) {
        report.stopped.get_or_insert(format!("at the end: {e}"));
    }
    report.failures.sort_by_key(|f| f.line);
    progress.done();
    Ok(report)
}

/// Imports `input` into `node` in group commits: the path of both the command and the bench.
pub fn into_node(
    node: &Node,
    input: &mut dyn BufRead,
    format: Option<Format>,
    progress: bool,
) -> Result<Report> {
    let mut sink = Live {
        node,
        pending: Vec::with_capacity(IN_FLIGHT),
    };
    run(input, format, node.meta(), &mut sink, progress)
}

/// `stocksync import`: runs the import (or the dry run), prints the report and
/// fails with exit code 2 if a line failed, 1 if storage failed.
pub fn command(
    dir: &Path,
    file: &Path,
    format: Option<Format>,
    dry_run: bool,
    as_json: bool,
) -> Result<()> {
    let format = format.or_else(|| Format::of_path(file));
    let mut input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        let f = File::open(file)
            .map_err(|e| UsageError(format!("cannot open {}: {e}", file.display())))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let progress = io::stderr().is_terminal();
    let report = if dry_run {
        let mut sink = DryRun::open(dir)?;
        let meta = sink.store.meta().clone();
        let mut r = run(&mut input, format, &meta, &mut sink, progress)?;
        r.dry_run = true;
        r
    } else {
        let node = super::open_node(dir)?;
        let r = into_node(&node, &mut input, format, progress);
        node.shutdown();
        r?
    };
    print(&report, file, as_json)?;
    if let Some(why) = &report.stopped {
        return Err(Reported::new(format!("import stopped {why}"), 1).into());
    }
    if report.failed > 0 {
        let msg = format!(
            "{} of {} lines failed; {}",
            report.failed,
            report.lines_read,
            if dry_run {
                "nothing was changed (dry run)"
            } else {
                "the other lines were applied"
            }
        );
        return Err(Reported::new(msg, EXIT_BAD_INPUT).into());
    }
    Ok(())
}

fn print(r: &Report, file: &Path, as_json: bool) -> Result<()> {
    if as_json {
        let mut v = serde_json::to_value(r)?;
        v["file"] = file.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let (done, again) = if r.dry_run {
        ("would be applied", "already recorded")
    } else {
        ("applied", "replayed (already recorded)")
    };
    println!(
        "{}{}: {} lines read, {} {done}, {} {again}, {} failed",
        if r.dry_run {
            "dry run of "
        } else {
            "import of "
        },
        file.display(),
        r.lines_read,
        r.applied,
        r.replayed,
        r.failed
    );
    for f in &r.failures {
        match &f.id {
            Some(id) => println!("line {} (id {id}): {}", f.line, f.reason),
            None => println!("line {}: {}", f.line, f.reason),
        }
    }
    if r.failures_not_listed > 0 {
        println!("... and {} more failed lines", r.failures_not_listed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use stocksync::model::{LocationId, Role};
    use stocksync::node::NodeOptions;
    use stocksync::store::memory::MemoryStore;

    fn receipts(n: usize) -> String {
        (0..n)
            .map(|i| format!("{{\"kind\":\"receive\",\"sku\":\"A\",\"qty\":1,\"id\":\"r{i}\"}}\n"))
            .collect()
    }

    #[test]
    fn a_storage_failure_stops_the_import_and_says_where() {
        let store = MemoryStore::new();
        let identity = stocksync::Identity::from_seed([7; 32]);
        let meta = NodeMeta {
            id: identity.node_id(),
            name: "t".into(),
            location: LocationId::new("S1").unwrap(),
            role: Role::Till,
        };
        let node = Node::start(
            identity,
            meta,
            store.clone(),
            NodeOptions::default(),
            Arc::new(|| 0),
        )
        .unwrap();
        let text = receipts(IN_FLIGHT + 10);
        store.fail_next_commits(1);
        let report = into_node(&node, &mut text.as_bytes(), None, false).unwrap();
        let stopped = report.stopped.as_deref().unwrap_or_default();
        assert!(stopped.contains(&format!("line {IN_FLIGHT}")), "{stopped}");
        assert!(stopped.contains("disk full"), "{stopped}");
        assert_eq!(
            (report.lines_read, report.applied, report.failed),
            (IN_FLIGHT as u64, 0, 0)
        );
        assert_eq!(store.event_count(), 0);
        // Once storage works again, the same file goes in whole.
        let report = into_node(&node, &mut text.as_bytes(), None, false).unwrap();
        assert!(report.stopped.is_none());
        assert_eq!(report.applied, IN_FLIGHT as u64 + 10);
        assert_eq!(store.event_count(), IN_FLIGHT + 10);
    }
}
