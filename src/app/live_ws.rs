//! Live queries over WebSocket: `GET {base}/live?<list filters>&from=N` upgrades, then the
//! server sends `{"type":"snapshot",...}` (the first page, unless resuming after `from=N`) and
//! one `{"type":"change",...}` per committed change of the filtered view, with its log index.
//! A client that reconnects with `from=<last index it saw>` resumes with no gap and no
//! duplicate.
//!
//! Owns: [`LivePump`], one thread per app that moves committed changes from every WebSocket
//! live feed into the hub (woken by an engine commit hook), and the WebSocket route.
//! Must not: run on the reactor (catch-up reads the log) or hold the engine alive after the
//! server stops (the pump thread ends when the route is dropped).
//!
//! A feed that falls behind (engine subscriber buffer full) gets `{"type":"error",...,
//! "last_index":N}`, then a close (1013; 1001 when the server stops, 1011 when the log cannot
//! be read); the client reconnects with `from=N`. The pump sends a
//! feed more only while its connection's hub queue is under half full, so a client that reads
//! slower than the pump produces (a catch-up from the log, a burst of writes) is paced, not
//! closed as a slow consumer; one that stops reading falls behind its engine buffer and is
//! dropped as above.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::handle::Handle;
use super::live::{parse_live_query, LiveError, LiveFeed, LiveItem};
use super::model::Model;
use crate::http::problem::Problem;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::json::Writer;
use crate::ws::{self, ConnId, Ctx, Endpoint, Message, SharedHub, WsHandler};

/// Longest wait for a commit an engine hook announced to reach a feed, in milliseconds
/// (delivery follows the hook at once; this only bounds a stalled engine).
const DELIVERY_WAIT_MS: u64 = 100;

/// How often the pump looks at its feeds with no commit announced (new feeds, removals).
const PUMP_IDLE_MS: u64 = 1_000;

/// Items one feed may send per pump round before the others get their turn.
const ITEMS_PER_ROUND_MAX: usize = 256;

/// A feed gets more items only while its connection's hub queue holds fewer frames than
/// this (half the hub's limit): a client that reads, but slower than the pump produces (a
/// catch-up from the log, a burst of writes), is paced instead of closed as a slow consumer.
const QUEUE_FRAMES_HIGH: usize = ws::hub::QUEUE_FRAMES_MAX / 2;

/// ...and fewer bytes than this (half the hub's limit).
const QUEUE_BYTES_HIGH: usize = ws::hub::QUEUE_BYTES_MAX / 2;

/// How long the pump waits before looking again at a feed paced by a full queue, in
/// milliseconds. A client that never drains it is cut off by the engine (its subscriber
/// buffer fills: an `error` with `last_index`) or by the WebSocket ping timeout.
const PACED_RETRY_MS: u64 = 5;

/// A live feed of some model, producing JSON text messages.
trait AnyFeed: Send {
    fn next_message(&mut self, target_index: u64) -> Result<Option<String>, LiveError>;
    fn last_index(&self) -> u64;
}

impl<M: Model> AnyFeed for LiveFeed<M> {
    fn next_message(&mut self, target_index: u64) -> Result<Option<String>, LiveError> {
        let wait = Duration::from_millis(DELIVERY_WAIT_MS);
        let item = self.next_up_to(target_index, wait)?;
        Ok(item.map(|item| {
            let mut w = Writer::new();
            w.begin_object();
            w.field("type");
            match item {
                LiveItem::Snapshot(page) => {
                    w.str("snapshot");
                    page.write_fields(&mut w);
                }
                LiveItem::Change(change) => {
                    w.str("change");
                    change.write_fields(&mut w);
                }
            }
            w.end_object();
            w.finish().unwrap_or_else(|_| "{}".into())
        }))
    }

    fn last_index(&self) -> u64 {
        LiveFeed::last_index(self)
    }
}

#[derive(Default)]
struct PumpState {
    added: Vec<(ConnId, Box<dyn AnyFeed>)>,
    removed: Vec<ConnId>,
    stop: bool,
}

struct PumpShared {
    state: Mutex<PumpState>,
    wake: Condvar,
    /// Highest committed index announced by the engine hook.
    target_index: AtomicU64,
    /// Feeds the pump has or is about to take: with none, a commit need not wake it (saves a
    /// futex wake and a context switch per committed event on a write-heavy app).
    feeds: std::sync::atomic::AtomicUsize,
}

fn lock(shared: &PumpShared) -> MutexGuard<'_, PumpState> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Moves committed changes of every WebSocket live feed of an app into its hub.
pub struct LivePump {
    shared: Arc<PumpShared>,
    hub: Arc<SharedHub>,
    thread: Option<JoinHandle<()>>,
}

impl LivePump {
    /// Starts the pump thread for the app behind `handle`.
    pub fn start(handle: &Handle) -> Arc<LivePump> {
        let shared = Arc::new(PumpShared {
            state: Mutex::new(PumpState::default()),
            wake: Condvar::new(),
            target_index: AtomicU64::new(handle.engine().applied_index()),
            feeds: std::sync::atomic::AtomicUsize::new(0),
        });
        let hook_shared = Arc::downgrade(&shared);
        handle.engine().on_commit(move |committed| {
            // A flag and a notify: the applier never waits on the pump's work (it holds the
            // lock only between its rounds, never while it pumps).
            if let Some(shared) = hook_shared.upgrade() {
                let index = committed.envelope.index;
                shared.target_index.fetch_max(index, Ordering::AcqRel);
                // A feed added after this load is woken by `add` and reads the new target.
                if shared.feeds.load(Ordering::Acquire) > 0 {
                    // Through the lock: the pump reads the target and starts waiting under
                    // it, so a notify sent between the two would find no waiter and the
                    // event would wait PUMP_IDLE_MS for the next round.
                    drop(lock(&shared));
                    shared.wake.notify_one();
                }
            }
        });
        let hub = SharedHub::new(ws::HubConfig {
            presence_notices: false,
            ..ws::HubConfig::default()
        });
        let (thread_shared, thread_hub) = (Arc::clone(&shared), Arc::clone(&hub));
        let thread = std::thread::Builder::new()
            .name("lithair-live".into())
            .spawn(move || run(&thread_shared, &thread_hub))
            .expect("spawn the live query thread");
        Arc::new(LivePump {
            shared,
            hub,
            thread: Some(thread),
        })
    }

    fn add(&self, id: ConnId, feed: Box<dyn AnyFeed>) {
        let mut state = lock(&self.shared);
        state.added.push((id, feed));
        self.shared.feeds.fetch_add(1, Ordering::AcqRel);
        drop(state);
        self.shared.wake.notify_one();
    }

    fn remove(&self, id: ConnId) {
        lock(&self.shared).removed.push(id);
        self.shared.wake.notify_one();
    }
}

impl Drop for LivePump {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // Bounded: the thread checks `stop` at least every PUMP_IDLE_MS.
            let _ = thread.join();
        }
    }
}

/// A feed in the pump, and whether its connection's queue was too full to take more in the
/// last round.
struct Pumped {
    id: ConnId,
    feed: Box<dyn AnyFeed>,
    paced: bool,
}

fn run(shared: &PumpShared, hub: &SharedHub) {
    let mut feeds: Vec<Pumped> = Vec::new();
    let mut busy = false;
    loop {
        {
            let mut state = lock(shared);
            // A paced feed is behind by nature: it is looked at again after a short wait, not
            // in a spin.
            let target = shared.target_index.load(Ordering::Acquire);
            let behind = feeds
                .iter()
                .any(|pumped| !pumped.paced && pumped.feed.last_index() < target);
            let paced = feeds.iter().any(|pumped| pumped.paced);
            if !busy && !state.stop && state.added.is_empty() && !behind {
                let idle = Duration::from_millis(if paced { PACED_RETRY_MS } else { PUMP_IDLE_MS });
                state = shared
                    .wake
                    .wait_timeout(state, idle)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            if state.stop {
                return;
            }
            feeds.extend(state.added.drain(..).map(|(id, feed)| Pumped {
                id,
                feed,
                paced: false,
            }));
            let removed = std::mem::take(&mut state.removed);
            feeds.retain(|pumped| !removed.contains(&pumped.id));
            shared.feeds.store(feeds.len(), Ordering::Release);
        }
        let target = shared.target_index.load(Ordering::Acquire);
        busy = false;
        feeds.retain_mut(
            |pumped| match pump_one(hub, pumped.id, pumped.feed.as_mut(), target) {
                Pumping::Done => {
                    pumped.paced = false;
                    true
                }
                Pumping::More => {
                    pumped.paced = false;
                    busy = true;
                    true
                }
                Pumping::Paced => {
                    pumped.paced = true;
                    true
                }
                Pumping::Ended => false,
            },
        );
    }
}

/// What one round did for a feed.
#[derive(Debug, PartialEq, Eq)]
enum Pumping {
    /// Everything up to the target was sent.
    Done,
    /// The round's share was sent and more is waiting.
    More,
    /// The connection's queue is too full to take more now.
    Paced,
    /// The feed ended (error sent, or the connection is gone or closing).
    Ended,
}

/// Sends what one feed has up to `target`, while its connection's queue has room.
fn pump_one(hub: &SharedHub, id: ConnId, feed: &mut dyn AnyFeed, target: u64) -> Pumping {
    let has_room = |hub: &ws::Hub| {
        hub.queued_frames(id) < QUEUE_FRAMES_HIGH && hub.queued_bytes(id) < QUEUE_BYTES_HIGH
    };
    // Checked before taking an item from the feed, so nothing taken is ever held back; after
    // the first item, under the same hub lock as the previous send (one lock per item).
    let mut room = hub.with(|hub| has_room(hub));
    for _ in 0..ITEMS_PER_ROUND_MAX {
        if !room {
            return Pumping::Paced;
        }
        let text = match feed.next_message(target) {
            Ok(Some(text)) => text,
            Ok(None) => return Pumping::Done,
            Err(error) => {
                let mut w = Writer::new();
                w.begin_object();
                w.field("type");
                w.str("error");
                w.field("error");
                w.str(&error.to_string());
                w.field("last_index");
                w.u64(feed.last_index());
                w.end_object();
                let text = w.finish().unwrap_or_else(|_| "{}".into());
                // The feed is over: close once the error is sent, so a client reconnects
                // (with `from=last_index`) instead of waiting on a socket nothing feeds.
                let code = match error {
                    LiveError::Lagged { .. } => ws::close::TRY_AGAIN_LATER,
                    LiveError::Closed => ws::close::GOING_AWAY,
                    LiveError::Storage(_) => ws::close::INTERNAL_ERROR,
                };
                let _ = hub.with(|hub| {
                    hub.direct(id, &Message::Text(text))?;
                    hub.close(id, code, "live feed ended")
                });
                return Pumping::Ended;
            }
        };
        match hub.with(|hub| {
            Ok::<_, ws::HubError>((hub.direct(id, &Message::Text(text))?, has_room(hub)))
        }) {
            Ok((true, room_left)) => room = room_left,
            // Overflowed (being closed as a slow consumer) or gone.
            Ok((false, _)) | Err(_) => return Pumping::Ended,
        }
    }
    Pumping::More
}

/// The session side: registers the feed once the session is in the hub, drops it at the end.
struct LiveSession {
    pump: Arc<LivePump>,
    feed: Option<Box<dyn AnyFeed>>,
}

impl WsHandler for LiveSession {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(feed) = self.feed.take() {
            self.pump.add(ctx.id(), feed);
        }
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: Message) {
        // The feed is server to client; client messages (keep-alives) are ignored.
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _ended: &ws::Ended) {
        self.pump.remove(ctx.id());
    }
}

/// Adds `GET {base}/live` for `M`: the live query over WebSocket, fed by `pump`.
pub fn live_ws_routes<M: Model>(router: Router, handle: &Handle, pump: &Arc<LivePump>) -> Router {
    let base = M::PATH.trim_end_matches('/');
    let (handle, pump) = (handle.clone(), Arc::clone(pump));
    let endpoint = Endpoint::per_request().hub(Arc::clone(&pump.hub));
    router.get(&format!("{base}/live"), move |req: &mut Request| {
        ws_feed::<M>(&handle, &pump, &endpoint, req)
    })
}

fn ws_feed<M: Model>(
    handle: &Handle,
    pump: &Arc<LivePump>,
    endpoint: &Endpoint,
    req: &mut Request,
) -> Result<Response, Problem> {
    if let Err(error) = ws::upgrade::check(req) {
        return Ok(ws::upgrade::refusal(&error));
    }
    let pairs = req.query_pairs()?;
    let live = parse_live_query::<M>(&pairs).map_err(Problem::bad_request)?;
    let feed = LiveFeed::<M>::start(handle, live.query, live.from)
        .map_err(|error| Problem::new(503).with_detail(error.to_string()))?;
    let pump = Arc::clone(pump);
    let mut feed: Option<Box<dyn AnyFeed>> = Some(Box::new(feed));
    Ok(endpoint.respond_with(req, move |_, _| {
        Box::new(LiveSession {
            pump,
            feed: feed.take(),
        })
    }))
}
