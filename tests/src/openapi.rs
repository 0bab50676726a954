//! A contract checker for Swagger 2.0 specs (the HAProxy Data Plane API v2 and v3 specs
//! are both Swagger 2.0): does a request match a path, method, parameters and body
//! schema of the spec, and is a response valid for its operation and status?
//!
//! Schemas are checked with the `jsonschema` crate (draft 4, which Swagger 2.0 schemas
//! are a dialect of) after three translations that give the Swagger extensions the
//! meaning go-swagger (which generates the Data Plane API) gives them:
//! * `x-nullable: true` — `null` is accepted;
//! * `allOf` next to `additionalProperties: false` — the members' properties are merged
//!   into the object (in plain draft 4 that combination would reject every property);
//! * `readOnly` properties — refused in request bodies (the server sets them).

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// A loaded spec with its validators cached.
pub struct Spec {
    doc: Value,
    pub base_path: String,
    request_defs: Value,
    response_defs: Value,
    cache: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

/// What the request matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub template: String,
    pub method: String,
    pub operation_id: String,
    pub path_params: HashMap<String, String>,
}

impl Spec {
    /// Load a Swagger 2.0 YAML file.
    pub fn load(path: &Path) -> Spec {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read spec {}: {e}", path.display()));
        let doc: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        assert_eq!(
            doc["swagger"],
            "2.0",
            "{} is not a Swagger 2.0 spec",
            path.display()
        );
        let defs = doc["definitions"].clone();
        let request_defs = translate_defs(&defs, true);
        let response_defs = translate_defs(&defs, false);
        Spec {
            base_path: doc["basePath"].as_str().unwrap_or("").to_string(),
            doc,
            request_defs,
            response_defs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `info.version` of the spec.
    pub fn version(&self) -> &str {
        self.doc["info"]["version"].as_str().unwrap_or("")
    }

    /// Check one request. `path` includes the base path; `query` is decoded.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Matched, Vec<String>> {
        let m = self.match_path(method, path).map_err(|e| vec![e])?;
        let op = &self.doc["paths"][&m.template][&m.method];
        let mut errors = Vec::new();
        let params = self.params(&m.template, &m.method);
        let mut seen_query = Vec::new();
        let mut has_body_param = false;
        for p in &params {
            let name = p["name"].as_str().unwrap_or("");
            let required = p["required"].as_bool().unwrap_or(false);
            match p["in"].as_str().unwrap_or("") {
                "path" => match m.path_params.get(name) {
                    Some(v) => self.check_scalar(p, v, &mut errors),
                    None => errors.push(format!("path parameter {name} missing")),
                },
                "query" => {
                    seen_query.push(name.to_string());
                    let values: Vec<&String> = query
                        .iter()
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v)
                        .collect();
                    if values.is_empty() && required {
                        errors.push(format!("required query parameter {name} missing"));
                    }
                    for v in values {
                        self.check_scalar(p, v, &mut errors);
                    }
                }
                "body" => {
                    has_body_param = true;
                    match body {
                        None if required => errors.push("required body missing".into()),
                        None => {}
                        Some(b) => {
                            for e in self.validate(&p["schema"], b, true) {
                                errors.push(format!("body: {e}"));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for (k, _) in query {
            if !seen_query.contains(k) {
                errors.push(format!(
                    "query parameter {k} is not in the spec for {} {}",
                    m.method, m.template
                ));
            }
        }
        if body.is_some() && !has_body_param {
            errors.push(format!("{} {} takes no body", m.method, m.template));
        }
        // Documented in the spec's parameter description: "Cannot be used when version is specified."
        let has = |n: &str| query.iter().any(|(k, _)| k == n);
        if has("transaction_id") && has("version") {
            errors.push("transaction_id and version cannot be used together".into());
        }
        let _ = op;
        if errors.is_empty() {
            Ok(m)
        } else {
            Err(errors)
        }
    }

    /// Check one response to an operation the request matched.
    pub fn check_response(
        &self,
        m: &Matched,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let responses = &self.doc["paths"][&m.template][&m.method]["responses"];
        let resp = match responses.get(status.to_string()) {
            Some(r) => r,
            None => match responses.get("default") {
                Some(r) => r,
                None => {
                    return Err(vec![format!(
                        "status {status} is not a response of {} {}",
                        m.method, m.template
                    )])
                }
            },
        };
        let resp = self.resolve(resp, "responses");
        match (resp.get("schema"), body) {
            (None, None) => Ok(()),
            (None, Some(b)) => Err(vec![format!(
                "status {status} has no body in the spec, got {b}"
            )]),
            (Some(_), None) => Err(vec![format!("status {status} needs a body")]),
            (Some(s), Some(b)) => {
                let e = self.validate(s, b, false);
                if e.is_empty() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Find the path template and method; literal segments win over `{param}` ones.
    fn match_path(&self, method: &str, path: &str) -> Result<Matched, String> {
        let rel = path
            .strip_prefix(&self.base_path)
            .ok_or_else(|| format!("{path} is outside the base path {}", self.base_path))?;
        let segs: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
        let mut best: Option<(usize, String, HashMap<String, String>)> = None;
        for template in self.doc["paths"].as_object().unwrap().keys() {
            let tsegs: Vec<&str> = template.trim_end_matches('/').split('/').collect();
            if tsegs.len() != segs.len() {
                continue;
            }
            let mut params = HashMap::new();
            let mut literal = 0;
            let ok = tsegs.iter().zip(&segs).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    params.insert(t[1..t.len() - 1].to_string(), s.to_string());
                    !s.is_empty()
                } else {
                    literal += 1;
                    t == s
                }
            });
            if ok && best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
                best = Some((literal, template.clone(), params));
            }
        }
        let (_, template, path_params) =
            best.ok_or_else(|| format!("no path in the spec matches {path}"))?;
        let method = method.to_ascii_lowercase();
        let op = &self.doc["paths"][&template][&method];
        if !op.is_object() {
            return Err(format!(
                "{} {template} is not in the spec",
                method.to_uppercase()
            ));
        }
        Ok(Matched {
            operation_id: op["operationId"].as_str().unwrap_or("").to_string(),
            template,
            method,
            path_params,
        })
    }

    fn resolve<'a>(&'a self, v: &'a Value, section: &str) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap();
                assert!(
                    r.starts_with(&format!("#/{section}/")),
                    "unexpected $ref {r}"
                );
                &self.doc[section][name]
            }
            None => v,
        }
    }

    /// Path-level and operation-level parameters, resolved.
    fn params(&self, template: &str, method: &str) -> Vec<Value> {
        let item = &self.doc["paths"][template];
        let mut out: Vec<Value> = Vec::new();
        for p in item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(item[method]["parameters"].as_array().into_iter().flatten())
        {
            let p = self.resolve(p, "parameters").clone();
            out.retain(|q| !(q["name"] == p["name"] && q["in"] == p["in"]));
            out.push(p);
        }
        out
    }

    /// A path or query value against its parameter's type, enum, pattern and bounds.
    fn check_scalar(&self, p: &Value, raw: &str, errors: &mut Vec<String>) {
        let name = p["name"].as_str().unwrap_or("");
        let value = match p["type"].as_str().unwrap_or("string") {
            "integer" => match raw.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => {
                    return errors.push(format!("parameter {name}={raw:?} is not an integer"))
                }
            },
            "number" => match raw.parse::<f64>() {
                Ok(n) => json!(n),
                Err(_) => return errors.push(format!("parameter {name}={raw:?} is not a number")),
            },
            "boolean" => match raw {
                "true" => json!(true),
                "false" => json!(false),
                _ => return errors.push(format!("parameter {name}={raw:?} is not a boolean")),
            },
            _ => json!(raw),
        };
        let mut schema = Map::new();
        for k in [
            "type",
            "enum",
            "pattern",
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
        ] {
            if let Some(v) = p.get(k) {
                schema.insert(k.into(), v.clone());
            }
        }
        for e in self.validate(&Value::Object(schema), &value, true) {
            errors.push(format!("parameter {name}: {e}"));
        }
    }

    /// Validate `instance` against a schema fragment of the spec.
    pub fn validate(&self, fragment: &Value, instance: &Value, request: bool) -> Vec<String> {
        let key = format!("{request}:{fragment}");
        let validator = {
            let mut cache = self.cache.lock().unwrap();
            cache
                .entry(key)
                .or_insert_with(|| {
                    let defs = if request {
                        &self.request_defs
                    } else {
                        &self.response_defs
                    };
                    let root = json!({
                        "definitions": defs,
                        "allOf": [translate(fragment, request, defs)],
                    });
                    std::sync::Arc::new(
                        jsonschema::draft4::options()
                            .should_validate_formats(true)
                            .build(&root)
                            .unwrap_or_else(|e| panic!("spec schema does not compile: {e}")),
                    )
                })
                .clone()
        };
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

fn translate_defs(defs: &Value, request: bool) -> Value {
    let obj = defs.as_object().expect("definitions");
    Value::Object(
        obj.iter()
            .map(|(k, v)| (k.clone(), translate(v, request, defs)))
            .collect(),
    )
}

/// Swagger schema → draft 4 schema (see the module doc).
fn translate(s: &Value, request: bool, defs: &Value) -> Value {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let t = match k.as_str() {
            "properties" => Value::Object(
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(pk, pv)| {
                        let ro = pv.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
                        let schema = if request && ro {
                            json!({"not": {}})
                        } else {
                            translate(pv, request, defs)
                        };
                        (pk.clone(), schema)
                    })
                    .collect(),
            ),
            "items" | "additionalProperties" if v.is_object() => translate(v, request, defs),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| translate(x, request, defs))
                    .collect(),
            ),
            // Swagger-only keywords draft 4 does not know or would misread.
            "discriminator" | "example" | "readOnly" | "x-nullable" => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), t);
    }
    // go-swagger: allOf members + additionalProperties false = one closed object.
    if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            let mut props = out
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut required: Vec<Value> = out
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for member in all {
                let member = match member.get("$ref").and_then(Value::as_str) {
                    Some(r) => &defs[r.rsplit('/').next().unwrap()],
                    None => member,
                };
                let member = translate(member, request, defs);
                if let Some(p) = member.get("properties").and_then(Value::as_object) {
                    props.extend(p.clone());
                }
                if let Some(r) = member.get("required").and_then(Value::as_array) {
                    required.extend(r.clone());
                }
            }
            out.remove("allOf");
            out.insert("type".into(), json!("object"));
            out.insert("properties".into(), Value::Object(props));
            if !required.is_empty() {
                out.insert("required".into(), Value::Array(required));
            }
        }
    }
    if obj.get("x-nullable").and_then(Value::as_bool) == Some(true) {
        return json!({"anyOf": [{"type": "null"}, Value::Object(out)]});
    }
    Value::Object(out)
}
