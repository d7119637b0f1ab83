//! The routes every app gets besides its models: `/openapi.json` (OpenAPI 3.1 generated from
//! the models and command routes), `/docs` (a self-contained page that renders it, no CDN),
//! `/health` and `/ready`.
//!
//! Owns: describing the API; nothing here changes state.

use super::builder::{CommandInfo, ModelInfo};
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::json::{self, Map, Value};

/// The routes of this module that read no state: `/health` (the process is up), the API
/// description and its page. A cluster node answers them without confirming a read with the
/// leader, so they stay 200 while it knows no leader; `/ready` is not among them (a node that
/// cannot serve reads or take writes is not ready: 503 then).
pub(crate) const STATELESS_PATHS: [&str; 3] = ["/health", "/openapi.json", "/docs"];

/// Adds the documentation and probe routes.
pub(crate) fn add_routes(
    router: Router,
    name: &str,
    models: &[ModelInfo],
    commands: &[CommandInfo],
) -> Router {
    let spec = openapi(name, models, commands);
    let spec = json::to_string(&spec).unwrap_or_else(|_| "{}".into());
    router
        .get("/openapi.json", move |_: &mut Request| {
            Response::bytes(200, "application/json", spec.clone().into_bytes())
        })
        .get("/docs", |_: &mut Request| Response::html(200, DOCS_PAGE))
        .get("/health", |_: &mut Request| {
            Response::bytes(200, "application/json", b"{\"status\":\"up\"}".to_vec())
        })
        // The server starts only after the log is recovered and the engine accepts writes; in
        // a cluster this is a linearizable read like any other (503 while no leader is known).
        .get("/ready", |_: &mut Request| {
            Response::bytes(200, "application/json", b"{\"status\":\"ready\"}".to_vec())
        })
}

fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (key, value) in pairs {
        map.insert(key, value);
    }
    Value::Object(map)
}

fn text(value: &str) -> Value {
    Value::String(value.to_string())
}

fn reference(name: &str) -> Value {
    object(vec![(
        "$ref",
        text(&format!("#/components/schemas/{name}")),
    )])
}

fn json_body(schema: Value) -> Value {
    object(vec![(
        "content",
        object(vec![("application/json", object(vec![("schema", schema)]))]),
    )])
}

fn answer(description: &str, schema: Option<Value>) -> Value {
    let mut pairs = vec![("description", text(description))];
    if let Some(schema) = schema {
        pairs.push((
            "content",
            object(vec![("application/json", object(vec![("schema", schema)]))]),
        ));
    }
    object(pairs)
}

fn problem_answers(codes: &[(&str, &str)]) -> Vec<(String, Value)> {
    codes
        .iter()
        .map(|(code, description)| {
            (
                code.to_string(),
                answer(description, Some(reference("Problem"))),
            )
        })
        .collect()
}

fn operation(summary: String, body: Option<Value>, answers: Vec<(String, Value)>) -> Value {
    let mut responses = Map::new();
    for (code, value) in answers {
        responses.insert(code, value);
    }
    let mut pairs = vec![("summary", Value::String(summary))];
    if let Some(body) = body {
        pairs.push(("requestBody", body));
    }
    pairs.push(("responses", Value::Object(responses)));
    object(pairs)
}

/// The JSON Schema of a model, from its `_schema` description.
fn model_schema(schema_text: &str) -> Value {
    let described = json::parse(schema_text).unwrap_or(Value::Null);
    let mut properties = Map::new();
    let mut required = Vec::new();
    if let Some(fields) = described.get("fields").and_then(Value::as_array) {
        for field in fields {
            let name = field.get("name").and_then(Value::as_str).unwrap_or("");
            let kind = field
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("object");
            let flag = |key: &str| field.get(key).and_then(Value::as_bool).unwrap_or(false);
            // A nested or collection field (`Vec<T>`, a struct, an enum) is described by no
            // kind more precise than "any JSON value": no `type`, rather than a wrong
            // `object` for an array. An `Option` may also be null, as it is served.
            let mut property = match (kind, flag("optional")) {
                ("object", _) => vec![],
                (kind, true) => vec![("type", Value::Array(vec![text(kind), text("null")]))],
                (kind, false) => vec![("type", text(kind))],
            };
            if flag("read_only") || flag("primary_key") {
                property.push(("readOnly", Value::Bool(true)));
            }
            if let Some(rules) = field.get("rules").and_then(Value::as_array) {
                let rules: Vec<&str> = rules.iter().filter_map(Value::as_str).collect();
                if !rules.is_empty() {
                    property.push((
                        "description",
                        text(&format!("validate: {}", rules.join(", "))),
                    ));
                }
            }
            properties.insert(name, object(property));
            if !flag("optional")
                && !flag("has_default")
                && !flag("primary_key")
                && !flag("read_only")
            {
                required.push(text(name));
            }
        }
    }
    object(vec![
        ("type", text("object")),
        ("properties", Value::Object(properties)),
        ("required", Value::Array(required)),
    ])
}

/// The path parameters of `path` (each `{name}`), which OpenAPI requires declared; `id_type`
/// is the JSON type of `{id}` when it is a model's key, else every parameter is a string.
fn path_parameters(path: &str, id_type: Option<&str>) -> Value {
    let names = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'));
    let parameters = names
        .map(|name| {
            let kind = match id_type {
                Some(kind) if name == "id" => kind,
                _ => "string",
            };
            object(vec![
                ("name", text(name)),
                ("in", text("path")),
                ("required", Value::Bool(true)),
                ("schema", object(vec![("type", text(kind))])),
            ])
        })
        .collect();
    Value::Array(parameters)
}

fn model_paths(paths: &mut Map, model: &ModelInfo) {
    let name = model.name;
    let base = model.path.trim_end_matches('/');
    let list_schema = object(vec![
        ("type", text("object")),
        (
            "properties",
            object(vec![
                (
                    "data",
                    object(vec![("type", text("array")), ("items", reference(name))]),
                ),
                ("total", object(vec![("type", text("integer"))])),
                ("skip", object(vec![("type", text("integer"))])),
                ("take", object(vec![("type", text("integer"))])),
                ("has_more", object(vec![("type", text("boolean"))])),
            ]),
        ),
    ]);
    let mut list_answers = vec![(
        "200".to_string(),
        answer("a page of records", Some(list_schema)),
    )];
    list_answers.extend(problem_answers(&[("400", "bad query")]));
    let mut create_answers = vec![("201".to_string(), answer("created", Some(reference(name))))];
    create_answers.extend(problem_answers(&[
        ("400", "malformed JSON"),
        ("409", "unique value taken"),
        ("422", "invalid fields"),
    ]));
    let mut collection = vec![(
        "get",
        operation(format!("List {name} records"), None, list_answers),
    )];
    // A model written through commands only (`App::model_read_only`) serves its reads alone.
    if model.writable {
        collection.push((
            "post",
            operation(
                format!("Create a {name}"),
                Some(json_body(reference(name))),
                create_answers,
            ),
        ));
    }
    paths.insert(base, object(collection));
    let found = |what: &str| {
        let mut answers = vec![("200".to_string(), answer(what, Some(reference(name))))];
        answers.extend(problem_answers(&[
            ("404", "not found"),
            ("409", "conflict or version mismatch"),
            ("422", "invalid fields"),
        ]));
        answers
    };
    let mut read_answers = vec![(
        "200".to_string(),
        answer("the record", Some(reference(name))),
    )];
    read_answers.extend(problem_answers(&[("404", "not found")]));
    let mut delete_answers = vec![("204".to_string(), answer("deleted", None))];
    delete_answers.extend(problem_answers(&[("404", "not found")]));
    let item_path = format!("{base}/{{id}}");
    let mut item = vec![
        (
            "parameters",
            path_parameters(&item_path, Some(model.id_type)),
        ),
        (
            "get",
            operation(format!("Get a {name}"), None, read_answers),
        ),
    ];
    if model.writable {
        item.extend([
            (
                "put",
                operation(
                    format!("Replace a {name}"),
                    Some(json_body(reference(name))),
                    found("replaced"),
                ),
            ),
            (
                "patch",
                operation(
                    format!("Merge-patch a {name}"),
                    Some(json_body(object(vec![("type", text("object"))]))),
                    found("patched"),
                ),
            ),
            (
                "delete",
                operation(format!("Delete a {name}"), None, delete_answers),
            ),
        ]);
    }
    paths.insert(item_path, object(item));
}

/// The OpenAPI 3.1 document of an app.
pub(crate) fn openapi(name: &str, models: &[ModelInfo], commands: &[CommandInfo]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for model in models {
        model_paths(&mut paths, model);
        schemas.insert(model.name, model_schema(&(model.schema)()));
    }
    for command in commands {
        let mut answers = vec![(
            command.status.to_string(),
            answer("the command's output", None),
        )];
        answers.extend(problem_answers(&[
            ("400", "malformed JSON"),
            ("409", "refused by a domain rule"),
            ("422", "invalid input"),
        ]));
        let post = operation(
            command.summary.clone(),
            Some(json_body(object(vec![("type", text("object"))]))),
            answers,
        );
        // Commands may share a path under different methods (PATCH and DELETE of one item).
        let method = command.method.as_str().to_ascii_lowercase();
        match paths.get_mut(&command.path).and_then(Value::as_object_mut) {
            Some(item) => {
                item.insert(method, post);
            }
            None => {
                let parameters = path_parameters(&command.path, None);
                let mut item = vec![(method.as_str(), post)];
                if parameters.as_array().is_some_and(|list| !list.is_empty()) {
                    item.insert(0, ("parameters", parameters));
                }
                paths.insert(command.path.clone(), object(item));
            }
        }
    }
    schemas.insert(
        "Problem",
        object(vec![
            ("type", text("object")),
            (
                "properties",
                object(vec![
                    ("type", object(vec![("type", text("string"))])),
                    ("title", object(vec![("type", text("string"))])),
                    ("status", object(vec![("type", text("integer"))])),
                    ("detail", object(vec![("type", text("string"))])),
                    ("errors", object(vec![("type", text("array"))])),
                ]),
            ),
        ]),
    );
    object(vec![
        ("openapi", text("3.1.0")),
        (
            "info",
            object(vec![
                ("title", text(name)),
                ("version", text(env!("CARGO_PKG_VERSION"))),
            ]),
        ),
        ("paths", Value::Object(paths)),
        (
            "components",
            object(vec![("schemas", Value::Object(schemas))]),
        ),
    ])
}

/// `/docs`: renders `/openapi.json` with a few lines of script; no external resources.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API docs</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.op{margin:.4rem 0;padding:.4rem .6rem;border-radius:4px;background:#f6f6f6}
.m{display:inline-block;width:4.5rem;font-weight:bold;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put{color:#a60}.patch{color:#a0a}.delete{color:#c00}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f6f6f6;padding:.6rem;overflow:auto}
</style></head><body><h1 id="title">API</h1><div id="paths">Loading /openapi.json...</div>
<h2>Schemas</h2><div id="schemas"></div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(spec=>{
  const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
  document.getElementById('title').textContent=spec.info.title+' '+spec.info.version;
  let html='';
  for(const [path,ops] of Object.entries(spec.paths)){
    html+='<h2><code>'+esc(path)+'</code></h2>';
    for(const [method,op] of Object.entries(ops)){
      if(method==='parameters')continue;
      const codes=Object.keys(op.responses||{}).join(' ');
      html+='<div class="op"><span class="m '+method+'">'+method+'</span>'+esc(op.summary||'')+
        ' <small>('+esc(codes)+')</small></div>';
    }
  }
  document.getElementById('paths').innerHTML=html;
  let schemas='';
  for(const [name,schema] of Object.entries(spec.components.schemas)){
    schemas+='<h3>'+esc(name)+'</h3><pre>'+esc(JSON.stringify(schema,null,2))+'</pre>';
  }
  document.getElementById('schemas').innerHTML=schemas;
}).catch(e=>{document.getElementById('paths').textContent='Cannot load /openapi.json: '+e;});
</script></body></html>"#;
