//! A small writer of the Prometheus text exposition format 0.0.4: `# HELP`
//! and `# TYPE` once per family, then `name{label="value",...} value` lines,
//! label values and help texts escaped, at most [`MAX_SERIES`] series a family.

use std::fmt::Write as _;

/// Most series one family writes; further ones are dropped and counted
/// (label values come from bounded sets, this is the last guard).
pub const MAX_SERIES: usize = 1024;

/// A family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets at restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// An unsigned integer.
    U(u64),
    /// A signed integer.
    I(i64),
    /// A float (NaN and infinities written as the format spells them).
    F(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::U(v)
    }
}

impl From<usize> for Num {
    fn from(v: usize) -> Self {
        Num::U(v as u64)
    }
}

impl From<i64> for Num {
    fn from(v: i64) -> Self {
        Num::I(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::F(v)
    }
}

impl From<bool> for Num {
    fn from(v: bool) -> Self {
        Num::U(u64::from(v))
    }
}

/// The exposition being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
    dropped: u64,
}

/// One family being written; samples go under its HELP and TYPE lines.
pub struct Family<'a> {
    text: &'a mut Exposition,
    name: &'static str,
    series: usize,
}

impl Exposition {
    /// Starts family `name` (a valid metric name; ours are constants) of `kind`.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            text: self,
            name,
            series: 0,
        }
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, v: impl Into<Num>) {
        self.family(name, kind, help).sample(&[], v);
    }

    /// Series dropped over [`MAX_SERIES`] so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    /// Writes one sample with `labels` (names are constants of ours).
    pub fn sample(&mut self, labels: &[(&str, &str)], v: impl Into<Num>) -> &mut Self {
        if self.series >= MAX_SERIES {
            self.text.dropped += 1;
            return self;
        }
        self.series += 1;
        let out = &mut self.text.out;
        out.push_str(self.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label_into(out, val);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        let _ = match v.into() {
            Num::U(n) => write!(out, "{n}"),
            Num::I(n) => write!(out, "{n}"),
            Num::F(f) if f.is_nan() => write!(out, "NaN"),
            Num::F(f) if f == f64::INFINITY => write!(out, "+Inf"),
            Num::F(f) if f == f64::NEG_INFINITY => write!(out, "-Inf"),
            Num::F(f) => write!(out, "{f}"),
        };
        out.push('\n');
        self
    }
}

/// A HELP text escaped: backslash and line feed.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value escaped: backslash, double quote and line feed.
fn escape_label_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "a \\ help\nline")
            .sample(&[("k", "a\"b\\c\nd"), ("o", "z")], 3u64)
            .sample(&[("k", "")], -2i64);
        e.single("y_seconds", Kind::Gauge, "y", 1.5f64);
        e.single("z", Kind::Gauge, "z", f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n\
             x_total{k=\"a\\\"b\\\\c\\nd\",o=\"z\"} 3\nx_total{k=\"\"} -2\n\
             # HELP y_seconds y\n# TYPE y_seconds gauge\ny_seconds 1.5\n\
             # HELP z z\n# TYPE z gauge\nz NaN\n"
        );
    }

    #[test]
    fn a_family_stops_at_the_series_cap() {
        let mut e = Exposition::default();
        let mut f = e.family("p", Kind::Gauge, "p");
        for i in 0..MAX_SERIES + 5 {
            f.sample(&[("peer", &i.to_string())], 1u64);
        }
        assert_eq!(e.dropped(), 5);
        let lines = e.finish().lines().filter(|l| l.starts_with("p{")).count();
        assert_eq!(lines, MAX_SERIES);
    }
}
