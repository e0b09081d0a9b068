//! A bounded query string parser for the hub's routes: known names only, each
//! once, percent-decoded, the whole string at most [`MAX_QUERY`] bytes.

use super::super::error::ApiError;

/// Longest query string accepted.
pub const MAX_QUERY: usize = 1_024;

/// The parameters of one query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new("invalid_input", msg)
}

/// Percent-decodes `s` (`+` is a space); `None` if malformed or not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Query {
    /// Parses `raw`, accepting only the names in `known`, each at most once.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let mut q = Query::default();
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(q);
        };
        if raw.len() > MAX_QUERY {
            return Err(bad(format!("query string over {MAX_QUERY} bytes")));
        }
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = decode(k).ok_or_else(|| bad("malformed query string"))?;
            let v = decode(v).ok_or_else(|| bad("malformed query string"))?;
            if !known.contains(&k.as_str()) {
                return Err(bad(format!(
                    "unknown query parameter {k:?} (known: {})",
                    known.join(", ")
                )));
            }
            if q.get(&k).is_some() {
                return Err(bad(format!("query parameter {k:?} given twice")));
            }
            q.pairs.push((k, v));
        }
        Ok(q)
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: `default` when absent, else `1..=max`.
    pub fn limit(&self, (default, max): (usize, usize)) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad(format!("limit {v:?}: expected 1 to {max}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_once_bounded_and_decoded() {
        let q = Query::parse(Some("sku_prefix=SH%4F+1&limit=5"), &["sku_prefix", "limit"]).unwrap();
        assert_eq!(q.get("sku_prefix"), Some("SHO 1"));
        assert_eq!(q.limit((100, 1000)).unwrap(), 5);
        assert!(Query::parse(Some("bogus=1"), &["limit"]).is_err());
        assert!(Query::parse(Some("limit=1&limit=2"), &["limit"]).is_err());
        assert!(Query::parse(Some("limit=%zz"), &["limit"]).is_err());
        assert!(Query::parse(Some("limit=%4"), &["limit"]).is_err());
        let long = format!("limit={}", "1".repeat(MAX_QUERY));
        assert!(Query::parse(Some(&long), &["limit"]).is_err());
        for l in ["0", "1001", "-1", "x"] {
            let q = Query::parse(Some(&format!("limit={l}")), &["limit"]).unwrap();
            assert!(q.limit((100, 1000)).is_err(), "{l}");
        }
        assert_eq!(Query::parse(None, &[]).unwrap().limit((7, 9)).unwrap(), 7);
    }
}
