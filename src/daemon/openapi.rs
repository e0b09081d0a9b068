//! The OpenAPI 3.1 document of the API, hand-written in `openapi.json` (the
//! node's routes), `openapi_hub.json` (the hub's) and `openapi_channels.json`
//! (the channels'), merged once and served at `GET /openapi.json`.

use std::sync::OnceLock;

use serde_json::Value;

/// The node's part: the whole document but the hub's and channels' routes.
const NODE_PART: &str = include_str!("openapi.json");

/// Parts merged into the node's: `{"paths": {...}, "schemas": {...}}` each.
const PARTS: [&str; 2] = [
    include_str!("openapi_hub.json"),
    include_str!("openapi_channels.json"),
];

/// The merged document's text.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        // The parts are constants of this build; the tests below parse them.
        let mut doc: Value = serde_json::from_str(NODE_PART).expect("openapi.json parses");
        for part in PARTS {
            let part: Value = serde_json::from_str(part).expect("an OpenAPI part parses");
            for (key, at) in [("paths", "/paths"), ("schemas", "/components/schemas")] {
                if let (Some(from), Some(Value::Object(to))) = (
                    part.get(key).and_then(Value::as_object),
                    doc.pointer_mut(at),
                ) {
                    to.extend(from.clone());
                }
            }
        }
        serde_json::to_string_pretty(&doc).expect("a JSON value serialises")
    })
}

#[cfg(test)]
mod tests {
    use super::super::api::all_routes;
    use super::super::error::CODES;
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_served_routes() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let routes: Vec<_> = all_routes().collect();
        for r in &routes {
            let op = &paths[r.path][r.method];
            assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
            // Public routes say so; the others inherit the bearer requirement.
            assert_eq!(op.get("security").is_some(), !r.auth, "{}", r.path);
        }
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(
            documented,
            routes.len(),
            "the document lists a route not served"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 10);
        for r in refs {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match x.as_str() {
                        Some(s) if k == "$ref" => out.push(s.to_string()),
                        _ => collect_refs(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_error_code_is_documented() {
        for (code, _, _) in CODES {
            assert!(document().contains(code), "{code}");
        }
    }
}
