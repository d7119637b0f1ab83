//! The HTTP routes every model gets: list, get, create, replace, patch, delete and schema,
//! plus the mapping of write errors to `application/problem+json`.
//!
//! Owns: HTTP semantics of model resources (status codes, `Location`, `ETag`, `If-Match`,
//! `Idempotency-Key`, list envelopes).
//! Must not: decide writes itself (every write is a `Tx` command run through
//! `Handle::execute_then`); block a thread on a commit or read the log on the applier.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::command::Tx;
use super::handle::{Executed, Handle, ReplayError, WriteError};
use super::model::{FieldError, Id, Model, Rejection};
use super::schema::{parse_list_query, FieldKind, Rule};
use crate::crypto::sha256::Sha256;
use crate::engine::Meta;
use crate::http::problem::Problem;
use crate::http::router::Router;
use crate::http::{inline, Handler, Request, Response};
use crate::json::{self, ToJson, Writer};

/// Longest `Idempotency-Key` accepted, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;

/// Maps a write error to its problem response.
pub fn write_error_problem(error: &WriteError) -> Problem {
    match error {
        WriteError::Rejected(rejection) => rejection_problem(rejection),
        WriteError::DiskFull => Problem::new(507).with_detail(error.to_string()),
        WriteError::TooLarge { max, .. } => Problem::new(413)
            .with_detail(error.to_string())
            .with_extension("max_bytes", max),
        WriteError::Unavailable(_) => Problem::new(503)
            .with_detail(error.to_string())
            .with_header("Retry-After", "1"),
        WriteError::Failed => Problem::internal().with_detail(error.to_string()),
        WriteError::KeyReused => Problem::unprocessable(error.to_string()),
    }
}

/// Maps a command rejection to its problem response.
pub fn rejection_problem(rejection: &Rejection) -> Problem {
    match rejection {
        Rejection::NotFound { .. } => Problem::not_found(rejection.to_string()),
        Rejection::Conflict { message } => Problem::conflict(message.clone()),
        Rejection::VersionMismatch { current, .. } => Problem::conflict(rejection.to_string())
            .with_extension("current_version", current)
            .with_header("ETag", etag(*current)),
        Rejection::Invalid(errors) => {
            let mut problem = Problem::unprocessable("some fields are invalid");
            for FieldError { field, message } in errors {
                problem = problem.with_field_error(field.clone(), message.clone());
            }
            problem
        }
        Rejection::Domain { status, message } if DOMAIN_STATUSES.contains(status) => {
            Problem::new(*status).with_detail(message.clone())
        }
        // A refusal must read as one: a 2xx would tell the client its write was stored, a
        // 204 or 304 cannot carry the problem, and a status past 999 cannot be sent at all.
        Rejection::Domain { status, message } => Problem::internal().with_detail(format!(
            "the command refused this request with status {status}, which is not an error \
             status (400 to 599): {message}"
        )),
    }
}

/// The statuses a `Rejection::Domain` may answer with: client and server errors.
pub const DOMAIN_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;

fn etag(version: u64) -> String {
    // Per GET by id: written by hand, `format!` costs several times more.
    let mut digits = [0u8; 20];
    let digits = decimal(&mut digits, version);
    let mut tag = String::with_capacity(digits.len() + 2);
    tag.push('"');
    tag.extend(digits.iter().map(|&d| char::from(d)));
    tag.push('"');
    tag
}

/// `n` in decimal ASCII digits, written at the end of `buf`.
fn decimal(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Parses an `If-Match` list into the versions it names. `*` asks only that the record exist
/// (RFC 9110 §13.1.1), which every write by id checks anyway: `None`. If-Match compares
/// strongly, so a weak tag (`W/"3"`) never matches: a list of weak tags alone fails at once
/// (412), and weak tags beside strong ones are left out. A tag that is not one of our
/// version tags (`"<decimal>"`) is a 400.
fn if_match(req: &Request) -> Result<Option<Vec<u64>>, Problem> {
    let Some(value) = req.header("if-match") else {
        return Ok(None);
    };
    if value.trim() == "*" {
        return Ok(None);
    }
    let mut versions = Vec::new();
    for tag in value.split(',').map(str::trim) {
        let (weak, tag) = match tag.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, tag),
        };
        let version = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(parse_version)
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "If-Match must list version tags such as \"3\", got {value:?}"
                ))
            })?;
        if !weak {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        return Err(Problem::new(412)
            .with_detail("If-Match named only weak tags, which never match (RFC 9110 §13.1.1)"));
    }
    Ok(Some(versions))
}

/// A version as our ETags write it: decimal digits without a leading zero (so `"07"` is not
/// version 7, as for `If-None-Match`).
fn parse_version(digits: &str) -> Option<u64> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// The engine metadata of a write request (generated route or command route): idempotency
/// key with the request's fingerprint, and request id.
pub(crate) fn write_meta(req: &Request) -> Result<Meta, Problem> {
    let mut meta = Meta::default();
    if let Some(key) = req.header("idempotency-key") {
        let key = key.trim();
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(Problem::bad_request(format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes"
            )));
        }
        meta.idempotency_key = Some(Arc::from(key));
        meta.request_fingerprint = Some(request_fingerprint(req));
    }
    if let Some(request_id) = req.header("x-request-id") {
        meta.correlation_id = Some(Arc::from(request_id));
    }
    Ok(meta)
}

/// What identifies a keyed write's request, to tell a retry (same method, target and body)
/// from a key reused for another request: the first eight bytes of a SHA-256 over the three,
/// each length-prefixed so no two requests share their input. Deterministic (every node and
/// every restart computes the same value from the same request).
fn request_fingerprint(req: &Request) -> NonZeroU64 {
    let mut hash = Sha256::new();
    for part in [
        req.method.as_str().as_bytes(),
        req.target.as_bytes(),
        &req.body,
    ] {
        hash.update(&(part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    NonZeroU64::new(u64::from_le_bytes(first)).unwrap_or(NonZeroU64::MIN)
}

/// Parses the `{id}` path parameter for `M`; an id of the wrong shape names no record (404).
fn path_id<M: Model>(req: &Request) -> Result<Id, Problem> {
    let raw = req.param_str("id").unwrap_or_default();
    let spec = &M::FIELDS[M::PRIMARY_KEY];
    match spec.kind {
        FieldKind::UInt | FieldKind::Int => raw
            .parse()
            .map(Id::Int)
            .map_err(|_| Problem::not_found(format!("{} {raw} not found", M::NAME))),
        _ => Ok(Id::Str(raw.to_string())),
    }
}

fn record_response<M: Model>(status: u16, record: &M, version: u64) -> Response {
    Response::json(status, record).with_header("ETag", etag(version))
}

/// Adds the routes of `M` to `router`: reads always, writes when `writable` (a model written
/// only through commands, like the shop's orders, leaves them out).
pub fn model_routes<M: Model>(router: Router, handle: &Handle, writable: bool) -> Router {
    let base = M::PATH.trim_end_matches('/');
    let item = format!("{base}/{{id}}");
    let (h1, h2, h3, h4, h5, h6) = (
        handle.clone(),
        handle.clone(),
        handle.clone(),
        handle.clone(),
        handle.clone(),
        handle.clone(),
    );
    let render_in_place = AtomicBool::new(true);
    let router = router
        // `_schema` is one of `model::ROUTE_SEGMENTS`, which no string id may take.
        .get(&format!("{base}/_schema"), |_: &mut Request| {
            Response::bytes(200, "application/json", schema_json::<M>().into_bytes())
        })
        .get(base, move |req: &mut Request| list::<M>(&h1, req))
        // A single-record read holds the read lock for one small record (rendered in place)
        // or one copy: cheap and non-blocking, so the reactor may run it inline.
        .get(
            &item,
            inline(move |req: &mut Request| {
                show::<M>(&h3, req, &render_in_place).unwrap_or_else(Response::from)
            }),
        );
    if !writable {
        return router;
    }
    router
        .post(base, write_route(move |req| create::<M>(&h2, req)))
        .put(&item, write_route(move |req| replace::<M>(&h4, req)))
        .patch(&item, write_route(move |req| patch::<M>(&h5, req)))
        .delete(&item, write_route(move |req| remove::<M>(&h6, req)))
}

/// Largest body a write route decodes on the reactor thread; bigger ones go to a worker so a
/// long JSON decode cannot stall the reactor's other connections.
pub const INLINE_BODY_BYTES_MAX: usize = 16 * 1024;

/// A generated write route: it decodes, submits and returns a deferred response that the
/// engine completes once the write is durable (see [`run_write`]). Nothing blocks, keyed or
/// not, so the reactor may run it inline (no worker hand-off, no parked thread) when its body
/// is small.
struct WriteRoute<F>(F);

impl<F> Handler for WriteRoute<F>
where
    F: Fn(&mut Request) -> Result<Response, Problem> + Send + Sync + 'static,
{
    fn call(&self, req: &mut Request) -> Response {
        (self.0)(req).unwrap_or_else(Response::from)
    }

    fn is_inline(&self, req: &Request) -> bool {
        deferrable(req)
    }
}

fn write_route<F>(route: F) -> Arc<dyn Handler>
where
    F: Fn(&mut Request) -> Result<Response, Problem> + Send + Sync + 'static,
{
    Arc::new(WriteRoute(route))
}

/// Whether a write request may run on the reactor: every write is answered through a
/// deferred response (see [`WriteRoute`]), so only the body's decoding time decides.
fn deferrable(req: &Request) -> bool {
    small_body(req)
}

/// Whether the request's body is at most [`INLINE_BODY_BYTES_MAX`]. The server asks before the
/// body is read (`Handler::plan` runs on the head), so the declared `Content-Length` decides
/// then; a chunked body's size is unknown up front and counts as large.
pub(crate) fn small_body(req: &Request) -> bool {
    if !req.body.is_empty() {
        return req.body.len() <= INLINE_BODY_BYTES_MAX;
    }
    if req.header("transfer-encoding").is_some() {
        return false;
    }
    match req.header("content-length") {
        None => true,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .is_ok_and(|declared| declared <= INLINE_BODY_BYTES_MAX),
    }
}

fn list<M: Model>(handle: &Handle, req: &mut Request) -> Result<Response, Problem> {
    let pairs = req.query_pairs()?;
    let query = parse_list_query(&pairs, M::FIELDS).map_err(Problem::bad_request)?;
    // Copy the page out under the read lock; serialize after releasing it.
    let (total, page) = handle.read(|state| state.collection::<M>().page(&query));
    let mut w = Writer::new();
    w.begin_object();
    w.field("data");
    page.write_json(&mut w);
    w.field("total");
    w.u64(total as u64);
    w.field("skip");
    w.u64(query.skip as u64);
    w.field("take");
    w.u64(query.take as u64);
    w.field("has_more");
    w.bool(query.skip.saturating_add(page.len()) < total);
    w.end_object();
    let body = w
        .finish()
        .map_err(|e| Problem::internal().with_detail(e.to_string()))?;
    Ok(Response::bytes(200, "application/json", body.into_bytes()))
}

/// Largest rendering of one record made while holding the read lock, in bytes. Rendering a
/// small record in place costs less than copying it out (no allocation per field); past this
/// size the copy is the shorter hold, so a model whose records render larger switches to
/// copy-then-render (DESIGN §2: never serialize a large response under the lock).
const RENDER_UNDER_LOCK_BYTES_MAX: usize = 4 * 1024;

/// What a GET by id took out of the read lock.
enum Shown<M> {
    /// The client's `If-None-Match` names the current version.
    NotModified,
    /// The record, rendered in place (it was small enough).
    Rendered(Writer),
    /// A copy of the record, to render after the lock is released.
    Copied(M),
}

/// GET by id. `render_in_place` starts true and is cleared, for the life of the process, the
/// first time a record of `M` renders past `RENDER_UNDER_LOCK_BYTES_MAX`: large records are
/// rendered under the lock only by the reads already in flight at that moment.
fn show<M: Model>(
    handle: &Handle,
    req: &mut Request,
    render_in_place: &AtomicBool,
) -> Result<Response, Problem> {
    let id = path_id::<M>(req)?;
    let wanted = req.header("if-none-match");
    let in_place = render_in_place.load(Ordering::Relaxed);
    let found = handle.read(|state| {
        let record = state.collection::<M>().get(&id)?;
        let version = record.version;
        if wanted.is_some_and(|tags| etag_matches(tags, version)) {
            return Some((Shown::NotModified, version));
        }
        if !in_place {
            return Some((Shown::Copied(record.value.clone()), version));
        }
        let mut writer = Writer::new();
        record.value.write_json(&mut writer);
        Some((Shown::Rendered(writer), version))
    });
    let Some((shown, version)) = found else {
        return Err(Problem::not_found(format!("{} {id} not found", M::NAME)));
    };
    let rendered = match shown {
        Shown::NotModified => None,
        Shown::Rendered(writer) => {
            if writer.as_bytes().len() > RENDER_UNDER_LOCK_BYTES_MAX {
                render_in_place.store(false, Ordering::Relaxed);
            }
            Some(writer.finish())
        }
        Shown::Copied(value) => Some(json::to_string(&value)),
    };
    let mut response = match rendered {
        None => Response::new(304),
        Some(Ok(text)) => Response::bytes(200, "application/json", text.into_bytes()),
        Some(Err(e)) => {
            return Err(
                Problem::internal().with_detail(format!("response not representable as JSON: {e}"))
            )
        }
    };
    response
        .headers
        .append_cow(Cow::Borrowed("ETag"), Cow::Owned(etag(version)));
    Ok(response)
}

/// True when an `If-None-Match` list names `version`, or is `*` (any current representation,
/// RFC 9110 §13.1.2: the record exists, so a GET answers 304).
fn etag_matches(tags: &str, version: u64) -> bool {
    let mut digits = [0u8; 20];
    let digits = decimal(&mut digits, version);
    tags.split(',').any(|tag| {
        if tag.trim() == "*" {
            return true;
        }
        let tag = tag.trim().trim_start_matches("W/");
        let quoted = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
        quoted.is_some_and(|d| d.as_bytes() == digits)
    })
}

/// Runs a write and answers with the record it produced and the version the command gave it
/// (returned by the command itself: no second read of the state); an idempotent retry answers
/// with the record as it is now, marked `Idempotent-Replayed: true`.
///
/// Always deferred: the engine's applier completes the response once the write is durable.
/// A keyed first execution is remembered there (one insert at the back of the outcome
/// window); a retry whose outcome is in that window is answered there too (one read-locked
/// copy of the record); only a retry that needs the log read back is answered by the
/// handle's lookup thread (see `Replays`), never by the applier.
fn run_write<M: Model>(
    handle: &Handle,
    meta: Meta,
    status: u16,
    decide: impl Fn(&mut Tx<'_>) -> Result<(M, u64), Rejection> + Send + Sync + 'static,
) -> Result<Response, Problem> {
    let (placeholder, responder) = Response::deferred();
    let replays = meta.idempotency_key.is_some().then(|| handle.replays());
    handle.execute_then(meta, decide, move |outcome| match outcome {
        Ok(Executed {
            output: Some((record, version)),
            receipt,
        }) => {
            if let Some(replays) = &replays {
                replays.remember::<M>(&receipt, record.id());
            }
            responder.complete(render_write(&record, version, status, false));
        }
        Ok(Executed {
            output: None,
            receipt,
        }) => {
            let replays = replays.expect("a write without an Idempotency-Key is never a retry");
            replays.replay::<M>(receipt, move |found| {
                responder.complete(replayed(found, status));
            });
        }
        Err(error) => responder.complete(write_error_problem(&error).into()),
    });
    Ok(placeholder)
}

/// The answer to an idempotent retry (see [`run_write`]).
fn replayed<M: Model>(found: Result<(M, u64), ReplayError>, status: u16) -> Response {
    match found {
        Ok((record, version)) => render_write(&record, version, status, true),
        Err(ReplayError::KeyReused) => {
            Problem::conflict("this Idempotency-Key was used for another request").into()
        }
        Err(ReplayError::Gone(id)) => {
            Problem::not_found(format!("{} {id} no longer exists", M::NAME)).into()
        }
        Err(ReplayError::Unavailable(reason)) => Problem::new(503)
            .with_detail(reason)
            .with_header("Retry-After", "1")
            .into(),
        Err(ReplayError::Forgotten) => {
            Response::new(status).with_header("Idempotent-Replayed", "true")
        }
    }
}

fn render_write<M: Model>(record: &M, version: u64, status: u16, replayed: bool) -> Response {
    let mut response = record_response(status, record, version);
    if status == 201 {
        // A string key is the client's text: percent-encoded, so `a/b`, `x?y` or `%41` name
        // this record as one path segment (the route decodes it back), not another resource.
        let segment = match record.id() {
            Id::Int(value) => value.to_string(),
            Id::Str(text) => crate::http::percent::encode_component(&text),
        };
        let location = format!("{}/{segment}", M::PATH.trim_end_matches('/'));
        response = response.with_header("Location", location);
    }
    if replayed {
        response = response.with_header("Idempotent-Replayed", "true");
    }
    response
}

/// The record a write produced, with the version it has once this command is applied.
fn with_version<M: Model>(tx: &Tx<'_>, record: M) -> (M, u64) {
    let version = tx.version::<M>(&record.id());
    (record, version)
}

fn create<M: Model>(handle: &Handle, req: &mut Request) -> Result<Response, Problem> {
    let record: M = req.json()?;
    let meta = write_meta(req)?;
    run_write(handle, meta, 201, move |tx| {
        tx.records_from_json();
        let created = tx.create(record.clone())?;
        Ok(with_version(tx, created))
    })
}

fn replace<M: Model>(handle: &Handle, req: &mut Request) -> Result<Response, Problem> {
    let id = path_id::<M>(req)?;
    let record: M = req.json()?;
    let (meta, expected) = (write_meta(req)?, if_match(req)?);
    run_write(handle, meta, 200, move |tx| {
        if let Some(expected) = &expected {
            tx.expect_version_among::<M>(&id, expected)?;
        }
        tx.records_from_json();
        let replaced = tx.replace(&id, record.clone())?;
        Ok(with_version(tx, replaced))
    })
}

fn patch<M: Model>(handle: &Handle, req: &mut Request) -> Result<Response, Problem> {
    let id = path_id::<M>(req)?;
    let patch: M::Patch = req.json()?;
    let (meta, expected) = (write_meta(req)?, if_match(req)?);
    run_write(handle, meta, 200, move |tx| {
        if let Some(expected) = &expected {
            tx.expect_version_among::<M>(&id, expected)?;
        }
        tx.records_from_json();
        let updated = tx.update::<M>(&id, patch.clone())?;
        Ok(with_version(tx, updated))
    })
}

fn remove<M: Model>(handle: &Handle, req: &mut Request) -> Result<Response, Problem> {
    let id = path_id::<M>(req)?;
    let (meta, expected) = (write_meta(req)?, if_match(req)?);
    let decide = move |tx: &mut Tx<'_>| {
        if let Some(expected) = &expected {
            tx.expect_version_among::<M>(&id, expected)?;
        }
        tx.delete::<M>(&id).map(|_| ())
    };
    // A delete answers 204 whether or not it is a retry: always deferred.
    let (placeholder, responder) = Response::deferred();
    handle.execute_then(meta, decide, move |outcome| {
        responder.complete(match outcome {
            Ok(_) => Response::no_content(),
            Err(error) => write_error_problem(&error).into(),
        });
    });
    Ok(placeholder)
}

/// `GET {base}/_schema`: the model's fields and constraints.
pub fn schema_json<M: Model>() -> String {
    let mut w = Writer::new();
    w.begin_object();
    w.field("name");
    w.str(M::NAME);
    w.field("path");
    w.str(M::PATH);
    w.field("fields");
    w.begin_array();
    for spec in M::FIELDS.iter().filter(|spec| !spec.skip) {
        w.element();
        w.begin_object();
        w.field("name");
        w.str(spec.json_name);
        w.field("type");
        w.str(kind_name(spec.kind));
        let flags = [
            ("optional", spec.optional),
            ("primary_key", spec.primary_key),
            ("unique", spec.unique),
            ("indexed", spec.indexed),
            ("has_default", spec.has_default),
            ("immutable", spec.immutable),
            ("read_only", spec.read_only),
        ];
        for (name, value) in flags {
            w.field(name);
            w.bool(value);
        }
        w.field("rules");
        w.begin_array();
        for rule in spec.rules {
            w.element();
            w.str(&describe_rule(rule));
        }
        w.end_array();
        w.end_object();
    }
    w.end_array();
    w.end_object();
    w.finish().unwrap_or_else(|_| "{}".into())
}

/// JSON type name of a field kind.
pub fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Int | FieldKind::UInt => "integer",
        FieldKind::Float => "number",
        FieldKind::Bool => "boolean",
        FieldKind::Str => "string",
        FieldKind::Other => "object",
    }
}

/// The rule as written in `#[http(validate = "...")]`.
pub fn describe_rule(rule: &Rule) -> String {
    match *rule {
        Rule::Len {
            min,
            max: Some(max),
        } => format!("len({min}..={max})"),
        Rule::Len { min, max: None } => format!("len({min}..)"),
        Rule::Range {
            min,
            max,
            max_inclusive,
        } => {
            let min = min.map(|v| v.to_string()).unwrap_or_default();
            let max = max.map(|v| v.to_string()).unwrap_or_default();
            let dots = if max_inclusive { "..=" } else { ".." };
            format!("range({min}{dots}{max})")
        }
        Rule::Email => "email".into(),
        Rule::Url => "url".into(),
    }
}

/// Serializes any value (used by `/openapi.json` and tests).
pub fn to_json_text<T: ToJson + ?Sized>(value: &T) -> String {
    json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn post(headers: &[(&'static str, &'static str)], body: &[u8]) -> Request {
        let mut req = Request::new(Method::Post, "/items");
        for (name, value) in headers {
            req.headers.append(*name, *value);
        }
        req.body = body.to_vec();
        req
    }

    #[test]
    fn etags_render_and_match_exactly() {
        assert_eq!(etag(0), "\"0\"");
        assert_eq!(etag(u64::MAX), format!("\"{}\"", u64::MAX));
        assert!(etag_matches("\"7\"", 7));
        assert!(etag_matches("\"1\", W/\"42\" ", 42));
        assert!(!etag_matches("\"07\"", 7));
        assert!(!etag_matches("\"7", 7));
        assert!(!etag_matches("7", 7));
        assert!(!etag_matches("\"70\"", 7));
        assert!(!etag_matches("", 0));
    }

    #[test]
    fn the_any_tag_matches_every_existing_record() {
        assert!(etag_matches("*", 3));
        assert!(etag_matches(" * ", u64::MAX));
        assert!(matches!(
            if_match(&post(&[("if-match", "*")], b"")),
            Ok(None)
        ));
        fn versions(value: &'static str) -> Result<Option<Vec<u64>>, Problem> {
            if_match(&post(&[("if-match", value)], b""))
        }
        assert_eq!(versions("\"4\"").ok(), Some(Some(vec![4])));
        assert_eq!(versions(" \"4\" , \"9\"").ok(), Some(Some(vec![4, 9])));
        // Strong comparison: weak tags never match.
        assert_eq!(versions("W/\"3\", \"5\"").ok(), Some(Some(vec![5])));
        assert_eq!(versions("W/\"3\"").map_err(|p| p.status).err(), Some(412));
        for bad in [
            "**",
            "\"07\"",
            "\"\"",
            "4",
            "\"4",
            "\"4\",",
            "\"-1\"",
            "\"18446744073709551616\"",
        ] {
            assert_eq!(
                versions(bad).map_err(|p| p.status).err(),
                Some(400),
                "{bad}"
            );
        }
    }

    #[test]
    fn small_body_decides_on_the_declared_length_before_the_body_is_read() {
        let limit = INLINE_BODY_BYTES_MAX.to_string();
        let over = (INLINE_BODY_BYTES_MAX + 1).to_string();
        let mut at_limit = post(&[], b"");
        at_limit.headers.append("content-length", limit);
        assert!(small_body(&at_limit));
        let mut too_big = post(&[], b"");
        too_big.headers.append("content-length", over);
        assert!(!small_body(&too_big));
        assert!(!small_body(&post(&[("transfer-encoding", "chunked")], b"")));
        assert!(!small_body(&post(&[("content-length", "x")], b"")));
        assert!(small_body(&post(&[], b"")));
        assert!(!small_body(&post(
            &[],
            &vec![b' '; INLINE_BODY_BYTES_MAX + 1]
        )));
        assert!(deferrable(&post(&[("idempotency-key", "k")], b"{}")));
        assert!(deferrable(&post(&[], b"{}")));
        assert!(!deferrable(&post(
            &[("idempotency-key", "k")],
            &vec![b' '; INLINE_BODY_BYTES_MAX + 1]
        )));
    }
}
