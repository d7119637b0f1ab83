//! Live queries: a model collection watched through the list filters of its routes. A feed
//! yields the first page (with the log index it was read at), then every committed change of
//! that model that touches the filtered view, each with its log index. Resuming after index N
//! yields exactly the changes after N (engine subscriptions: no gap, no duplicate).
//!
//! Owns: turning `AppEvent`s into view changes (`upsert` / `remove`), the SSE route
//! `GET {base}/stream`, and the JSON shapes both transports send.
//! Must not: hold the state lock while encoding, or block the engine (a lagging feed is cut
//! off by the engine's bounded subscriber buffer and must resume).
//!
//! What a change carries: `Created`/`Replaced` events carry the whole record; an `Updated`
//! event carries only a patch, so the record sent with it is read from the committed state,
//! which may already include later changes of that record (those changes still follow, in
//! order, so the client converges on the state at the last index it saw).

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use super::handle::Handle;
use super::model::{filter_matches, Id, Model, ModelEvent};
use super::schema::{parse_list_query, ListQuery};
use super::state::AppState;
use crate::engine::{SubscribeError, Subscription};
use crate::http::problem::Problem;
use crate::http::router::Router;
use crate::http::sse::{Idle, Sse, SseEvent, SseWriter};
use crate::http::{Request, Response};
use crate::json::{ToJson, Writer};

/// Interval between heartbeats on an idle SSE feed, in milliseconds. A heartbeat carries the
/// last index the feed has passed (as a `progress` event), so a reconnect resumes from there
/// instead of re-reading log entries of other models.
pub const LIVE_HEARTBEAT_MS: u64 = 15_000;

/// Shortest heartbeat a client may ask for with `heartbeat_ms=`, in milliseconds.
pub const LIVE_HEARTBEAT_MS_MIN: u64 = 100;

/// Longest heartbeat a client gets, in milliseconds (a longer `heartbeat_ms=` is cut to it).
/// A feed notices its client is gone only when it writes: with no bound, a client could ask
/// for a heartbeat that never comes, and every feed it opened and left on a quiet model would
/// hold its stream thread (one of `streams_max`) and its subscription until that model changed.
pub const LIVE_HEARTBEAT_MS_MAX: u64 = 300_000;

/// Most ids a feed remembers to tell which leaving records its client may hold. A view that
/// selects more is followed as after a resume: every record leaving it is reported as removed
/// (clients ignore ids they do not hold), so a feed holds at most this many ids, not one per
/// selected record of a large collection for as long as it is open.
pub const LIVE_VIEW_IDS_MAX: usize = 10_000;

/// `retry:` advice sent to SSE clients, in milliseconds.
pub const LIVE_RETRY_MS: u64 = 1_000;

/// Why a feed ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveError {
    /// The client fell more than the engine's subscriber buffer behind; it must resume after
    /// `last_index` (the last index it was sent or passed).
    Lagged {
        /// Resume after this index.
        last_index: u64,
    },
    /// The engine shut down.
    Closed,
    /// The log could not be read back (e.g. a range compacted away and no page to restart).
    Storage(String),
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveError::Lagged { last_index } => {
                write!(f, "the client fell behind; resume after index {last_index}")
            }
            LiveError::Closed => f.write_str("the server is shutting down"),
            LiveError::Storage(message) => write!(f, "the log cannot be read: {message}"),
        }
    }
}

/// The first page of a live query, read at one index.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<M> {
    /// Last log index applied to the state the page was read from.
    pub index: u64,
    /// Records matching the filters (all of them, not only this page).
    pub total: usize,
    /// The page, sorted and cut by `skip`/`take`.
    pub data: Vec<M>,
}

/// One change of the filtered view.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<M> {
    /// The record now matches the filters (new, changed, or entering the view).
    Upsert {
        /// Log index of the event.
        index: u64,
        /// `created`, `updated` or `replaced`.
        kind: &'static str,
        /// The record.
        record: M,
    },
    /// The record left the view (deleted, or no longer matching the filters).
    Remove {
        /// Log index of the event.
        index: u64,
        /// `updated`, `replaced` or `deleted`.
        kind: &'static str,
        /// Which record.
        id: Id,
    },
}

/// What a feed yields.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveItem<M> {
    /// The first page (also sent again when a resume point is no longer in the log).
    Snapshot(Page<M>),
    /// A change, in log order.
    Change(Change<M>),
}

/// A live query on model `M`.
pub struct LiveFeed<M: Model> {
    handle: Handle,
    query: ListQuery,
    subscription: Subscription<AppState>,
    /// Ids currently in the client's view; `None` after a resume, when the view the client
    /// holds is unknown, or when it held more than [`LIVE_VIEW_IDS_MAX`] (then every leaving
    /// record is reported; unknown ids are ignored).
    in_view: Option<HashSet<Id>>,
    pending: Option<Page<M>>,
    /// True until the first event after a resume: a log that no longer holds the resume
    /// point is answered with a fresh page instead of an error.
    resuming: bool,
}

impl<M: Model> LiveFeed<M> {
    /// Starts a feed: with `resume_after = Some(n)`, changes after index `n`; otherwise the
    /// first page, then the changes after it. A resume point beyond the log's end (a client
    /// of another data directory) gets a fresh page.
    pub fn start(
        handle: &Handle,
        query: ListQuery,
        resume_after: Option<u64>,
    ) -> Result<Self, LiveError> {
        let applied = handle.engine().applied_index();
        match resume_after.filter(|&after| after <= applied) {
            Some(after) => {
                let subscription = subscribe(handle, after + 1)?;
                Ok(LiveFeed {
                    handle: handle.clone(),
                    query,
                    subscription,
                    in_view: None,
                    pending: None,
                    resuming: true,
                })
            }
            None => {
                let (page, in_view) = first_page::<M>(handle, &query);
                let subscription = subscribe(handle, page.index + 1)?;
                Ok(LiveFeed {
                    handle: handle.clone(),
                    query,
                    subscription,
                    in_view,
                    pending: Some(page),
                    resuming: false,
                })
            }
        }
    }

    /// The last index this feed yielded or passed over (a client holding everything sent so
    /// far is up to date at this index).
    pub fn last_index(&self) -> u64 {
        self.subscription.next_index() - 1
    }

    /// Waits up to `timeout` for the next item; `Ok(None)` when nothing relevant committed.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<LiveItem<M>>, LiveError> {
        self.next_item(timeout, None)
    }

    /// The next item at or below `target_index` (a commit announced by an engine hook, which
    /// runs just before subscribers are fed): `Ok(None)` as soon as the feed has passed
    /// `target_index` with nothing relevant left, or after `timeout`.
    pub fn next_up_to(
        &mut self,
        target_index: u64,
        timeout: Duration,
    ) -> Result<Option<LiveItem<M>>, LiveError> {
        self.next_item(timeout, Some(target_index))
    }

    fn next_item(
        &mut self,
        timeout: Duration,
        target_index: Option<u64>,
    ) -> Result<Option<LiveItem<M>>, LiveError> {
        if let Some(page) = self.pending.take() {
            return Ok(Some(LiveItem::Snapshot(page)));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if target_index.is_some_and(|target| self.last_index() >= target) {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let committed = match self.subscription.next_timeout(left) {
                Ok(Some(committed)) => committed,
                Ok(None) if self.subscription.is_closed() => return Err(LiveError::Closed),
                Ok(None) => return Ok(None),
                Err(SubscribeError::Lagged { next_index }) => {
                    return Err(LiveError::Lagged {
                        last_index: next_index - 1,
                    })
                }
                Err(SubscribeError::Log(error)) if self.resuming => {
                    // The resume point was compacted into a snapshot: start over with a page.
                    let _ = error;
                    return self.restart().map(Some);
                }
                Err(SubscribeError::Log(error)) => {
                    return Err(LiveError::Storage(error.to_string()))
                }
            };
            self.resuming = false;
            let index = committed.envelope.index;
            let change = match committed.event.decode::<M>() {
                // Another model's event: passed over, like a change outside the view.
                None => None,
                Some(Ok(event)) => self.classify(index, event),
                Some(Err(error)) => {
                    let message = format!("event {index} of {} does not decode: {error}", M::NAME);
                    return Err(LiveError::Storage(message));
                }
            };
            if let Some(change) = change {
                return Ok(Some(LiveItem::Change(change)));
            }
            // Checked after every event passed over, whatever its model: a long run of them
            // (a catch-up, a busy model this feed does not watch) must not keep the caller
            // from its heartbeat or a shutdown.
            if left.is_zero() {
                return Ok(None);
            }
        }
    }

    fn restart(&mut self) -> Result<LiveItem<M>, LiveError> {
        let (page, in_view) = first_page::<M>(&self.handle, &self.query);
        self.subscription = subscribe(&self.handle, page.index + 1)?;
        self.in_view = in_view;
        self.resuming = false;
        Ok(LiveItem::Snapshot(page))
    }

    fn matches(&self, record: &M) -> bool {
        self.query
            .filters
            .iter()
            .all(|filter| filter_matches(record, filter))
    }

    /// Marks `id` as out of the view; true when the client may hold it.
    fn leave(&mut self, id: &Id) -> bool {
        match &mut self.in_view {
            Some(ids) => ids.remove(id),
            None => true,
        }
    }

    fn enter(&mut self, id: Id) {
        if let Some(ids) = &mut self.in_view {
            ids.insert(id);
            if ids.len() > LIVE_VIEW_IDS_MAX {
                self.in_view = None;
            }
        }
    }

    /// How many ids of its view the feed remembers; `None` when it remembers none and reports
    /// every record leaving the view (after a resume, or past [`LIVE_VIEW_IDS_MAX`]).
    pub fn view_ids(&self) -> Option<usize> {
        self.in_view.as_ref().map(HashSet::len)
    }

    fn classify(&mut self, index: u64, event: ModelEvent<M>) -> Option<Change<M>> {
        let (kind, id, record) = match event {
            ModelEvent::Created(record) => ("created", record.id(), Some(record)),
            ModelEvent::Replaced(record) => ("replaced", record.id(), Some(record)),
            ModelEvent::Updated { id, .. } => {
                // The patch alone cannot be filtered: read the record as committed now.
                let record = self.handle.get::<M>(&id).map(|(record, _)| record);
                match record {
                    Some(record) => ("updated", id, Some(record)),
                    // Deleted since: its `Deleted` event follows and removes it.
                    None => return None,
                }
            }
            ModelEvent::Deleted { id } => ("deleted", id, None),
        };
        match record {
            Some(record) if self.matches(&record) => {
                self.enter(id);
                Some(Change::Upsert {
                    index,
                    kind,
                    record,
                })
            }
            _ if kind == "created" => None,
            _ => self
                .leave(&id)
                .then_some(Change::Remove { index, kind, id }),
        }
    }
}

fn subscribe(handle: &Handle, from_index: u64) -> Result<Subscription<AppState>, LiveError> {
    handle
        .engine()
        .subscribe(from_index)
        .map_err(|error| LiveError::Storage(error.to_string()))
}

/// Reads the first page at one index, and the ids of every matching record when there are at
/// most [`LIVE_VIEW_IDS_MAX`] (`None` otherwise).
pub fn first_page<M: Model>(handle: &Handle, query: &ListQuery) -> (Page<M>, Option<HashSet<Id>>) {
    let (index, (total, data, in_view)) = handle.engine().read_indexed(|state| {
        let mut in_view = Some(HashSet::new());
        let (total, data) = state.collection::<M>().page_visiting(query, |record| {
            if let Some(ids) = &mut in_view {
                if ids.len() < LIVE_VIEW_IDS_MAX {
                    ids.insert(record.id());
                } else {
                    in_view = None;
                }
            }
        });
        (total, data, in_view)
    });
    if let Some(ids) = &in_view {
        assert_eq!(total, ids.len(), "ids of a collection are unique");
    }
    (Page { index, total, data }, in_view)
}

/// A parsed live request: the list query plus the options of a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRequest {
    /// Filters, sort and page of the first page.
    pub query: ListQuery,
    /// `from=N`: the last index the client saw; the feed resumes after it.
    pub from: Option<u64>,
    /// `heartbeat_ms=N`: heartbeat interval, at least [`LIVE_HEARTBEAT_MS_MIN`], at most
    /// [`LIVE_HEARTBEAT_MS_MAX`] (a longer one is cut to it).
    pub heartbeat_ms: u64,
}

/// Splits the query of a live request into the list query and the feed options `from` and
/// `heartbeat_ms`.
pub fn parse_live_query<M: Model>(pairs: &[(String, String)]) -> Result<LiveRequest, String> {
    let mut from = None;
    let mut heartbeat_ms = LIVE_HEARTBEAT_MS;
    let mut rest = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match key.as_str() {
            "from" => {
                let index = value
                    .parse::<u64>()
                    .map_err(|_| format!("from must be a log index (an integer), got {value:?}"))?;
                from = Some(index);
            }
            "heartbeat_ms" => {
                heartbeat_ms = value
                    .parse::<u64>()
                    .ok()
                    .filter(|&ms| ms >= LIVE_HEARTBEAT_MS_MIN)
                    .map(|ms| ms.min(LIVE_HEARTBEAT_MS_MAX))
                    .ok_or_else(|| {
                        format!("heartbeat_ms must be an integer >= {LIVE_HEARTBEAT_MS_MIN}, got {value:?}")
                    })?;
            }
            _ => rest.push((key.clone(), value.clone())),
        }
    }
    let query = parse_list_query(&rest, M::FIELDS)?;
    Ok(LiveRequest {
        query,
        from,
        heartbeat_ms,
    })
}

fn write_id(w: &mut Writer, id: &Id) {
    match id {
        Id::Int(value) => w.u64(*value),
        Id::Str(value) => w.str(value),
    }
}

/// One JSON object whose fields `write_fields` writes.
fn object_json(write_fields: impl FnOnce(&mut Writer)) -> String {
    let mut w = Writer::new();
    w.begin_object();
    write_fields(&mut w);
    w.end_object();
    // A value the writer refused (a non-finite float, say) makes the whole object `null`.
    w.finish().unwrap_or_else(|_| "null".into())
}

impl<M: Model> Page<M> {
    /// `{"index":N,"total":T,"data":[...]}`.
    pub fn to_json(&self) -> String {
        object_json(|w| self.write_fields(w))
    }

    /// Writes the fields of [`Page::to_json`] into an open object.
    pub fn write_fields(&self, w: &mut Writer) {
        w.field("index");
        w.u64(self.index);
        w.field("total");
        w.u64(self.total as u64);
        w.field("data");
        self.data.write_json(w);
    }
}

impl<M: Model> Change<M> {
    /// Log index of the change.
    pub fn index(&self) -> u64 {
        match self {
            Change::Upsert { index, .. } | Change::Remove { index, .. } => *index,
        }
    }

    /// `{"index":N,"op":"upsert"|"remove","kind":"created",...,"id":..,"data":record|null}`.
    pub fn to_json(&self) -> String {
        object_json(|w| self.write_fields(w))
    }

    /// Writes the fields of [`Change::to_json`] into an open object.
    pub fn write_fields(&self, w: &mut Writer) {
        let (op, index, kind) = match self {
            Change::Upsert { index, kind, .. } => ("upsert", index, kind),
            Change::Remove { index, kind, .. } => ("remove", index, kind),
        };
        w.field("index");
        w.u64(*index);
        w.field("op");
        w.str(op);
        w.field("kind");
        w.str(kind);
        w.field("id");
        match self {
            Change::Upsert { record, .. } => {
                write_id(w, &record.id());
                w.field("data");
                record.write_json(w);
            }
            Change::Remove { id, .. } => {
                write_id(w, id);
                w.field("data");
                w.null();
            }
        }
    }
}

/// Adds `GET {base}/stream` for `M`: the live query as Server-Sent Events.
pub fn live_routes<M: Model>(router: Router, handle: &Handle) -> Router {
    let base = M::PATH.trim_end_matches('/');
    let handle = handle.clone();
    router.get(&format!("{base}/stream"), move |req: &mut Request| {
        sse_feed::<M>(&handle, req)
    })
}

fn sse_feed<M: Model>(handle: &Handle, req: &mut Request) -> Result<Response, Problem> {
    let pairs = req.query_pairs()?;
    let live = parse_live_query::<M>(&pairs).map_err(Problem::bad_request)?;
    // `Last-Event-ID` (sent by a reconnecting browser) wins over `from` (the page's first URL).
    let last_event_id = match req.header("last-event-id") {
        Some(value) => Some(value.trim().parse::<u64>().map_err(|_| {
            Problem::bad_request(format!("Last-Event-ID must be a log index, got {value:?}"))
        })?),
        None => None,
    };
    let feed = LiveFeed::<M>::start(handle, live.query, last_event_id.or(live.from))
        .map_err(|error| Problem::new(503).with_detail(error.to_string()))?;
    let heartbeat = Duration::from_millis(live.heartbeat_ms);
    Ok(Sse::new().stream(move |writer| pump_sse(feed, heartbeat, writer)))
}

fn pump_sse<M: Model>(
    mut feed: LiveFeed<M>,
    heartbeat: Duration,
    writer: &mut SseWriter<'_>,
) -> io::Result<()> {
    writer.send(&SseEvent::data("{}").event("ready").retry_ms(LIVE_RETRY_MS))?;
    let mut last_sent = None;
    loop {
        let slice = match writer.idle(heartbeat) {
            // The server is shutting down: end the response; the browser reconnects with the
            // `Last-Event-ID` of the last event it got, to a server that is up.
            Idle::Stop => return Ok(()),
            Idle::Heartbeat if last_sent == Some(feed.last_index()) => {
                writer.comment("heartbeat")?;
                continue;
            }
            Idle::Heartbeat => {
                // Events of other models (or filtered out) moved the log on: say how far, so a
                // reconnect resumes from there rather than from the last matching change.
                let index = feed.last_index();
                last_sent = Some(index);
                writer.send(
                    &SseEvent::data(format!("{{\"index\":{index}}}"))
                        .event("progress")
                        .id(index.to_string()),
                )?;
                continue;
            }
            Idle::Wait(slice) => slice,
        };
        let item = match feed.next_timeout(slice) {
            Ok(item) => item,
            Err(LiveError::Closed) => return Ok(()),
            Err(error) => {
                // Lagged or storage: tell the client why, then end; it reconnects with the
                // `Last-Event-ID` of the last event it got and resumes from there.
                let mut w = Writer::new();
                w.begin_object();
                w.field("error");
                w.str(&error.to_string());
                w.field("last_index");
                w.u64(feed.last_index());
                w.end_object();
                let data = w.finish().unwrap_or_else(|_| "{}".into());
                return writer.send(&SseEvent::data(data).event("error"));
            }
        };
        let event = match item {
            Some(LiveItem::Snapshot(page)) => SseEvent::data(page.to_json())
                .event("snapshot")
                .id(page.index.to_string()),
            Some(LiveItem::Change(change)) => SseEvent::data(change.to_json())
                .event("change")
                .id(change.index().to_string()),
            None => continue,
        };
        last_sent = event.id.as_deref().and_then(|id| id.parse().ok());
        writer.send(&event)?;
    }
}
