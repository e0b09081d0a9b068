//! The OpenAPI 3.1 document of the API, hand-written in `openapi.json` and
//! served as is at `GET /openapi.json`.

/// The document's text.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::super::api::ROUTES;
    use super::super::error::CODES;
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_served_routes() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for r in ROUTES {
            let op = &paths[r.path][r.method];
            assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
            // Public routes say so; the others inherit the bearer requirement.
            assert_eq!(op.get("security").is_some(), !r.auth, "{}", r.path);
        }
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(
            documented,
            ROUTES.len(),
            "the document lists a route not served"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
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
            assert!(DOCUMENT.contains(code), "{code}");
        }
    }
}
