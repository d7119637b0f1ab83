//! Cluster mode of an app: starting the Raft node next to the engine (static `--cluster` map,
//! `--join`, or a restart from the peers file), the HTTP front that forwards writes from
//! followers to the leader (client writes through the pipelined link of `forward`, answered
//! with deferred responses, so they run on the reactor; signed operator requests over pooled
//! keep-alive connections, on a worker), and the `/_lithair/cluster` endpoints (status, join,
//! leave, transfer-leader).
//!
//! Owns: which requests a follower forwards, the 503 + `Retry-After` answer when no leader is
//! known, the cluster status JSON, the operator requests' HMAC signature, and learning the
//! peer addresses of members added later.
//! Must not: decide anything about consensus (the `raft` layer does) or about writes (the
//! engine and the model routes do).
//!
//! Reads are linearizable by default: the node confirms with the leader (ReadIndex, batched
//! in the Raft core: one heartbeat round confirms every read queued before it) that it holds
//! every write committed before the read, waits on a condition variable until its state has
//! applied them, and then serves locally. With `--read-mode lease` the leader skips the round
//! while its CheckQuorum lease holds: HTTP threads read the lease the Raft thread publishes
//! (`raft::reads::ReadLease`), so such a read touches no other thread, and runs on the reactor
//! when the engine already applied the lease's index. Other linearizable reads of inline
//! (cheap) routes do not hold a worker while they wait: the reactor runs them at once and
//! parks their responses until a ReadIndex batch that started after they ran confirms them
//! (`cluster_reads`: one round for every read parked before it, answered through deferred
//! responses). `?consistency=stale` skips all of it.
//!
//! Operator requests (`join`, `leave`, `transfer-leader`) carry `x-lithair-auth-time` (Unix
//! milliseconds), `x-lithair-auth-nonce` (hex, unique per signed request) and
//! `x-lithair-auth`, the hex HMAC-SHA256 under the cluster secret of
//! `METHOD \n TARGET \n TIME \n NONCE \n BODY`; a node refuses them unsigned, badly signed,
//! signed more than `AUTH_SKEW_MS_MAX` away from its clock, or with a signature it accepted
//! before (a replay to the same node; each node remembers its own). The nonce keeps two
//! distinct requests with the same target in the same millisecond (an operator's and a
//! follower's re-signed forward, say) from carrying the same signature.

use super::cli::{ReadMode, ServeOptions};
use super::cluster_reads::{confirm, Confirm, ParkedReads};
use super::forward::{connect, read_response, ForwardPool, Forwarder, LinkSettings, Outgoing};
pub use super::forward::{FORWARD_LINK_CONNECTIONS, FORWARD_QUEUE_MAX, FORWARD_TICK_MS};
use super::state::AppState;
use crate::crypto::random;
use crate::engine::{digest_hex, Engine, EngineOptions, Replica};
use crate::http::router::Router;
use crate::http::{Handler, HeadPlan, Method, Request, Response};
use crate::json::{self, Writer};
use crate::raft::node::{AppliedWatch, ClusterStatus, Inbox, Node, NodeConfig, PeerBook};
use crate::raft::storage_log::read_hard_state;
use crate::raft::{ConfChange, RaftError, Replication};
use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Header marking a request a follower forwarded (a node never forwards it again).
pub const FORWARDED_HEADER: &str = "x-lithair-forwarded";
/// Header carrying an operator request's signing time, in Unix milliseconds.
pub const AUTH_TIME_HEADER: &str = "x-lithair-auth-time";
/// Header carrying an operator request's hex HMAC-SHA256.
pub const AUTH_HEADER: &str = "x-lithair-auth";
/// Header carrying an operator request's nonce: `AUTH_NONCE_BYTES` bytes in hex, unique per
/// signed request and covered by the signature.
pub const AUTH_NONCE_HEADER: &str = "x-lithair-auth-nonce";
/// Bytes of an operator request's nonce (exactly; another length is refused).
pub const AUTH_NONCE_BYTES: usize = 16;
/// Largest difference between a signature's time and the node's clock, in milliseconds.
pub const AUTH_SKEW_MS_MAX: u64 = 300_000;
/// Operator signatures a node remembers at once, to refuse a request sent again with the same
/// signature (a replay) while its time is within `AUTH_SKEW_MS_MAX`. Only requests signed with
/// the cluster secret enter; past the bound, operator requests are answered 503 until older
/// signatures leave the window.
pub const AUTH_SIGNATURES_REMEMBERED_MAX: usize = 4096;
/// Time allowed for a forwarded request, from the moment the follower takes it to the
/// leader's answer, in milliseconds; past it the client gets a 503 with `Retry-After`.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;
/// Connections a node keeps open to the leader for the signed operator requests (join,
/// leave, transfer-leader), at most (busy or idle): each holds a worker and a connection
/// until the leader answers. Client writes use the pipelined link instead
/// (`FORWARD_LINK_CONNECTIONS`).
pub const FORWARD_CONNECTIONS_PER_PEER_MAX: usize = CLUSTER_WORKER_THREADS;
/// An idle forwarding connection older than this is closed instead of reused, in
/// milliseconds (well under the HTTP server's idle timeout, so the leader never closes it
/// while a request is on its way).
pub const FORWARD_IDLE_MS_MAX: u64 = 20_000;
/// Largest response head read back from the leader, in bytes.
pub const FORWARD_HEAD_BYTES_MAX: u64 = 64 * 1024;
/// Largest forwarded response read back, in bytes.
pub const FORWARD_RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Longest wait for the local state to reach a confirmed read index, in milliseconds.
pub const READ_APPLY_TIMEOUT_MS: u64 = 2000;
/// HTTP worker threads of a clustered node when the app kept the default. On the leader,
/// writes of deferred routes (every generated write with a small body, keyed or not) run on
/// the reactor and park no worker; a follower forwards client writes from the reactor too
/// (pipelined link, deferred responses). Workers still run the writes of routes that are not
/// inline (e.g. large bodies, custom blocking handlers), reads that wait for a ReadIndex
/// without the read queue, and the signed operator requests.
pub const CLUSTER_WORKER_THREADS: usize = 256;
/// How long `--join` keeps asking (no leader yet, a change in progress), in milliseconds.
pub const JOIN_TIMEOUT_MS: u64 = 60_000;
/// Pause between two join attempts, in milliseconds.
pub const JOIN_RETRY_MS: u64 = 200;
/// Interval between two "waiting to join" lines while a join is retried, in milliseconds.
pub const JOIN_PROGRESS_MS: u64 = 5_000;
/// How long a leader waits for a membership change to commit before answering, in ms.
pub const CONF_CHANGE_WAIT_MS: u64 = 10_000;
/// How long a leaving leader waits for another node to take over, in milliseconds.
pub const LEAVE_TRANSFER_WAIT_MS: u64 = 5_000;
/// How often a node looks for members whose peer address it does not know, in ms.
pub const PEER_RESOLVE_INTERVAL_MS: u64 = 500;
/// How long a member knows no leader before it asks the members it can reach whether it was
/// removed, in milliseconds: a few election timeouts, so an ordinary election never asks.
pub const REMOVAL_CHECK_LEADERLESS_MS: u64 = 3000;
/// How often a joined node that is not a voter yet repeats its join, in ms (see
/// `reannounce`): long enough that a leader sending it a large snapshot is not asked often.
pub const REANNOUNCE_MS: u64 = 3_000;
/// Time allowed for one operator or peer-resolution request, in milliseconds.
pub const ADMIN_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Time a follower allows its leader to answer for the members' progress in
/// `GET /_lithair/cluster`: to connect, and for each read and write, in milliseconds. Past
/// it the follower answers without that progress (`match_index`, `lag`, `progress_from`
/// null) rather than keep its caller waiting.
pub const STATUS_PROGRESS_TIMEOUT_MS: u64 = 1_000;
/// The status as this node alone knows it. Internal polls of a peer's status use it, so a
/// follower answering them never asks its leader in turn.
const LOCAL_STATUS_TARGET: &str = "/_lithair/cluster?consistency=stale";
/// How often bounded waits on the node's status look again, in milliseconds (operator
/// requests only; never on a client's path).
const STATUS_POLL_MS: u64 = 10;

/// The engine and node of a clustered app.
pub struct Clustered {
    /// The engine (cluster mode).
    pub engine: Engine<AppState>,
    /// The Raft node.
    pub node: Arc<Node>,
    /// The engine as the node drives it (status digests).
    pub replica: Arc<dyn Replica>,
    /// Events replayed from the local log at start.
    pub replayed: u64,
}

/// The cluster secret: `--cluster-secret`, else `LITHAIR_CLUSTER_SECRET`; never empty.
pub fn cluster_secret(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("LITHAIR_CLUSTER_SECRET").ok())
        .filter(|secret| !secret.is_empty())
}

/// The secret of a cluster given none whose every address is a loopback one: issue 7's
/// bootstrap command (`serve --node-id 1 ... --cluster 1@127.0.0.1:9081,...`) and its
/// `--join 127.0.0.1:8081` name no secret. It is public, so it keeps out only what cannot
/// reach a loopback listener anyway (another machine); anywhere else a secret is required.
pub const LOOPBACK_CLUSTER_SECRET: &str = "lithair-loopback-cluster";

/// Whether a node started with `options` listens on loopback alone (`--bind`, which the peer
/// listener shares) and is told of no peer or join target off loopback: then nothing off this
/// machine can reach it or be reached by it, and a cluster may do without a secret.
pub fn loopback_only(options: &ServeOptions) -> bool {
    options.bind.is_loopback()
        && options
            .cluster
            .iter()
            .all(|(_, addr)| addr.ip().is_loopback())
        && options.join.is_none_or(|join| join.ip().is_loopback())
}

/// The secret a node starts with: the one given, else [`LOOPBACK_CLUSTER_SECRET`] on
/// loopback alone (with a warning on stderr), else an error naming what is missing.
fn node_secret(options: &ServeOptions) -> Result<String, String> {
    if let Some(secret) = cluster_secret(options.cluster_secret.as_deref()) {
        return Ok(secret);
    }
    if !loopback_only(options) {
        return Err(
            "a cluster needs `--cluster-secret` or LITHAIR_CLUSTER_SECRET (only one \
             whose `--bind`, `--cluster` and `--join` addresses are all loopback may go \
             without)"
                .to_string(),
        );
    }
    eprintln!(
        "lithair: no cluster secret given: peers on loopback authenticate with the built-in \
         one, which any process on this machine knows; give `--cluster-secret` on a shared \
         machine"
    );
    Ok(LOOPBACK_CLUSTER_SECRET.to_string())
}

/// Whether `data` holds the peers file of a node that ran in a cluster (so `serve` without
/// `--cluster` or `--join` restarts it as that member).
pub fn has_membership(data: &Path) -> bool {
    data.join(crate::raft::node::PEER_BOOK_FILE_NAME).exists()
}

/// Opens the engine in cluster mode and starts the Raft node: from the static map, by
/// joining through `--join`, or (neither given) from the peers file of an earlier run.
///
/// # Errors
/// A missing secret, node id or peer port, a refused join, storage or socket failures.
pub fn start_cluster(
    options: &ServeOptions,
    engine_options: EngineOptions,
    initial: AppState,
) -> Result<Clustered, String> {
    let secret = node_secret(options)?;
    let data: &Path = &options.data;
    std::fs::create_dir_all(data)
        .map_err(|e| format!("cannot create data directory {}: {e}", data.display()))?;
    let book = PeerBook::read(data).map_err(|e| e.to_string())?;
    let config = node_config(options, book.as_ref(), secret)?;
    if let Some(note) = advertised_port_note(&config) {
        eprintln!("lithair: {note}");
    }
    let (id, own_peer_addr) = (config.id, config.peer_addr.clone());
    let announced_peer_addr = own_peer_addr.clone();
    // The durable commit index bounds what the engine may replay from the shared log.
    let hard_state = read_hard_state(data).map_err(|e| format!("cannot open the node: {e}"))?;
    let inbox = Inbox::new();
    let proposer = inbox.proposer();
    let (engine, opened) =
        Engine::open_cluster(data, engine_options, initial, proposer, hard_state.commit)
            .map_err(|e| format!("cannot open {}: {e}", data.display()))?;
    let replica = engine.replica();
    let node = Arc::new(
        Node::start(config, inbox, Arc::clone(&replica), engine.cluster_log())
            .map_err(|e| format!("cannot start the raft node: {e}"))?,
    );
    let watch = node.applied_watch();
    // Every applied index, Raft-internal entries included: a read may wait for a no-op.
    engine.on_applied(move |applied| watch.raise(applied));
    // Events applied before the hook was registered.
    node.applied_watch().raise(replica.applied_index());
    // The HTTP addresses of the members, as the join answer names them (see `reannounce`).
    let mut member_http: Vec<String> = Vec::new();
    if let Some(join) = options.join {
        let request = JoinRequest {
            id,
            peer_addr: own_peer_addr,
        };
        match join_cluster(&node, &join.to_string(), &request) {
            Ok(http) => member_http.extend(http),
            // A member restarting with `--join` still has its membership in its log.
            Err(e) if book.is_some() => eprintln!(
                "lithair: join via {join} failed ({e}); restarting from the local membership"
            ),
            Err(e) => {
                // The node wrote its peers file when it started; left behind, it would make a
                // later `serve` of this directory (without `--join`) start as a member of a
                // cluster that never took it in, and would turn a later failed `--join` into a
                // warning. A first join that failed leaves no membership behind.
                let book = data.join(crate::raft::node::PEER_BOOK_FILE_NAME);
                if let Err(removal) = std::fs::remove_file(&book) {
                    eprintln!("lithair: cannot remove {}: {removal}", book.display());
                }
                return Err(format!("cannot join the cluster via {join}: {e}"));
            }
        }
    }
    // A node that joined (now or in an earlier run) announces itself again while it is not a
    // voter yet: see `reannounce`.
    let joined = options.cluster.is_empty() && (options.join.is_some() || book.is_some());
    let announce = joined.then(|| Announce {
        via: options
            .join
            .map(|join| join.to_string())
            .into_iter()
            .chain(member_http)
            .collect(),
        request: JoinRequest {
            id,
            peer_addr: announced_peer_addr.clone(),
        },
        // Joined in this run: not seen yet. Restarted from its peers file alone: a membership
        // without it is a removal, never a join still to come.
        seen_self: options.join.is_none(),
    });
    let joining = options.join.is_some();
    start_peer_resolver(Arc::downgrade(&node), announce, joining).map_err(|e| e.to_string())?;
    Ok(Clustered {
        engine,
        node,
        replica,
        replayed: opened.applied_index - opened.snapshot_index,
    })
}

/// The node's configuration: id and peer port from the flags, else from the peers file of an
/// earlier run; membership from the static map unless the node joins (or joined).
fn node_config(
    options: &ServeOptions,
    book: Option<&PeerBook>,
    secret: String,
) -> Result<NodeConfig, String> {
    let id = options
        .node_id
        .or(book.map(|book| book.id))
        .ok_or("a cluster node needs `--node-id`")?;
    let peer_port = match options.peer_port {
        Some(port) => port,
        None => book
            .and_then(|book| book.peer_addr.parse::<SocketAddr>().ok())
            .map(|addr| addr.port())
            .ok_or("a cluster node needs `--peer-port`")?,
    };
    let from_map = options.join.is_none() && !options.cluster.is_empty();
    let peer_addr = options
        .cluster
        .iter()
        .find(|(member, _)| *member == id)
        .map(|(_, addr)| addr.to_string())
        .unwrap_or_else(|| SocketAddr::new(announced_ip(options), peer_port).to_string());
    Ok(NodeConfig {
        id,
        members: options
            .cluster
            .iter()
            .map(|(member, addr)| (*member, addr.to_string()))
            .collect(),
        peer_listen: SocketAddr::new(options.bind, peer_port),
        http_addr: SocketAddr::new(announced_ip(options), options.port).to_string(),
        peer_addr,
        secret: secret.into_bytes(),
        data_dir: options.data.clone(),
        join: !from_map,
        read_mode: match options.read_mode {
            ReadMode::ReadIndex => crate::raft::ReadMode::Safe,
            ReadMode::Lease => crate::raft::ReadMode::Lease,
        },
    })
}

/// A warning when peers are told to dial this node on another port than the one it listens
/// on for them (`--cluster` names it at `host:9081`, `--peer-port 9082`, say): right behind a
/// port mapping, otherwise a node no peer can reach, which would fail without a word.
fn advertised_port_note(config: &NodeConfig) -> Option<String> {
    let advertised = config.peer_addr.rsplit_once(':')?.1.parse::<u16>().ok()?;
    let listening = config.peer_listen.port();
    (advertised != listening).then(|| {
        format!(
            "peers dial this node at {} (`--cluster`) but it listens for them on port \
             {listening} (`--peer-port`); unless a port mapping joins the two, no peer will \
             reach it",
            config.peer_addr
        )
    })
}

/// The IP peers should use for this node's listeners.
fn announced_ip(options: &ServeOptions) -> IpAddr {
    if options.bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        options.bind
    }
}

/// What a node asks for when it joins.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JoinRequest {
    id: u64,
    peer_addr: String,
}

impl JoinRequest {
    fn encode(&self) -> String {
        format!("id={}&peer={}", self.id, self.peer_addr)
    }

    fn decode(body: &[u8]) -> Option<JoinRequest> {
        let text = std::str::from_utf8(body).ok()?;
        let (mut id, mut peer_addr) = (None, None);
        for pair in text.split('&') {
            match pair.split_once('=')? {
                ("id", value) => id = value.parse::<u64>().ok().filter(|&id| id != 0),
                ("peer", value) => {
                    peer_addr = value.parse::<SocketAddr>().ok().map(|a| a.to_string())
                }
                _ => return None,
            }
        }
        Some(JoinRequest {
            id: id?,
            peer_addr: peer_addr?,
        })
    }
}

/// Asks the cluster at `via` (any member: followers forward to the leader) to add this node,
/// retrying while no leader is known or another change is in progress, then learns every
/// member's peer address from the answer. Returns the members' HTTP addresses it names.
fn join_cluster(node: &Node, via: &str, request: &JoinRequest) -> Result<Vec<String>, String> {
    let started = Instant::now();
    let body = request.encode();
    // An operator watching the node start should not face a silent minute: the first failed
    // attempt is reported at once, then one line per JOIN_PROGRESS_MS.
    let mut next_report = started;
    loop {
        // Where this node's log ends (the query: signed with the target, and ignored by a
        // node of an older release): the leader refuses a member whose log ends before what
        // it acknowledged, instead of answering "joined" to a node that can never catch up.
        let target = format!("/_lithair/cluster/join?last={}", node.status().last_index);
        let outcome = admin_request(via, "POST", &target, Some(node), body.as_bytes());
        let retry_detail = match outcome {
            Ok((200, answer)) => {
                learn_peers(node, &answer)?;
                return Ok(member_http_addrs(&answer));
            }
            Ok((503, answer)) => String::from_utf8_lossy(&answer).into_owned(),
            Ok((status, answer)) => {
                let detail = String::from_utf8_lossy(&answer);
                return Err(format!("{via} answered {status}: {detail}"));
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() > Duration::from_millis(JOIN_TIMEOUT_MS) {
            return Err(format!(
                "gave up after {JOIN_TIMEOUT_MS} ms: {retry_detail}"
            ));
        }
        if Instant::now() >= next_report {
            let left = Duration::from_millis(JOIN_TIMEOUT_MS).saturating_sub(started.elapsed());
            eprintln!(
                "lithair: waiting to join via {via} ({}); retrying for {} s more",
                retry_detail.trim(),
                left.as_secs()
            );
            next_report = Instant::now() + Duration::from_millis(JOIN_PROGRESS_MS);
        }
        std::thread::sleep(Duration::from_millis(JOIN_RETRY_MS));
    }
}

/// The `http` addresses named in a `members` array of `answer` (a join answer), if any.
fn member_http_addrs(answer: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(answer) else {
        return Vec::new();
    };
    let Ok(document) = crate::json::parse(text) else {
        return Vec::new();
    };
    let members = document
        .get("members")
        .and_then(|members| members.as_array());
    members
        .into_iter()
        .flatten()
        .filter_map(|member| Some(member.get("http")?.as_str()?.to_string()))
        .collect()
}

/// Adds every member named in a `members` array of `answer` (join answer or status JSON)
/// with a peer address to this node's peers.
fn learn_peers(node: &Node, answer: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(answer).map_err(|_| "the answer is not UTF-8")?;
    let document = crate::json::parse(text).map_err(|e| format!("bad answer: {e}"))?;
    let members = document
        .get("members")
        .and_then(|members| members.as_array())
        .ok_or("the answer names no members")?;
    for member in members {
        let id = member.get("id").and_then(|id| id.as_u64());
        let peer = member.get("peer").and_then(|peer| peer.as_str());
        if let (Some(id), Some(peer)) = (id, peer) {
            node.add_peer(id, peer.to_string())
                .map_err(|e| format!("cannot add peer {id}: {e}"))?;
        }
    }
    Ok(())
}

/// How a node that joined announces itself again: the `--join` address, if given, and its
/// join request.
struct Announce {
    /// HTTP addresses to ask: the `--join` address, then the members the join answer named.
    via: Vec<String>,
    request: JoinRequest,
    /// Whether this node has seen itself in its membership since it started: until then, a
    /// membership without it is one from before its join (a snapshot older than its
    /// `AddLearner`); after, it means the node was removed.
    seen_self: bool,
}

/// Starts the thread that, while the node lives, learns the peer address of every member
/// this node cannot reach yet (added by a join it did not serve) from the leader's status,
/// and, for a node that joined, announces it again while it is not a voter.
fn start_peer_resolver(
    node: Weak<Node>,
    announce: Option<Announce>,
    joining: bool,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lithair-cluster-peers".into())
        .spawn(move || {
            let mut last_announce = Instant::now();
            let mut announce = announce;
            // A node started with `--join` may get a membership without it first (a snapshot
            // older than its `AddLearner`): only once it saw itself in one does leaving it
            // out mean a removal. Any other start was a member.
            let mut seen_self = !joining;
            let mut leaderless_since: Option<Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(PEER_RESOLVE_INTERVAL_MS));
                let Some(node) = node.upgrade() else { return };
                check_membership(&node, &mut seen_self, &mut leaderless_since);
                resolve_peers(&node);
                let due = last_announce.elapsed() >= Duration::from_millis(REANNOUNCE_MS);
                if let Some(announce) = announce.as_mut().filter(|_| due) {
                    last_announce = Instant::now();
                    reannounce(&node, announce);
                }
            }
        })
        .map(|_| ())
}

/// A joined node that is not a voter yet (a learner, or no membership has reached it) may be
/// known to the leader only by an address the leader alone held: the leader that served its
/// join. If that leader dies before the other members learned the address, the next leader
/// has the learner in its configuration but no way to reach it, and a learner never
/// campaigns: it waited forever. So, until it is a voter, the node repeats its (idempotent)
/// join through its `--join` address, the members its join answer named and every member
/// whose HTTP address a handshake told it: whichever node leads records the address. A node
/// whose membership left it out after it was in it (it was removed) does not: it must not add
/// itself back.
fn reannounce(node: &Node, announce: &mut Announce) {
    let status = node.status();
    let me = status.members.iter().find(|member| member.id == status.id);
    announce.seen_self |= me.is_some();
    let waiting = match me {
        Some(member) => !member.voter,
        None => !announce.seen_self,
    };
    if !waiting {
        return;
    }
    let target = format!("/_lithair/cluster/join?last={}", status.last_index);
    let body = announce.request.encode();
    let known = node.peer_addrs().into_iter().map(|(id, _)| id);
    let members = known.filter_map(|id| node.http_addr(id));
    let mut asked: Vec<String> = Vec::new();
    for via in announce.via.iter().cloned().chain(members) {
        if asked.contains(&via) {
            continue;
        }
        asked.push(via.clone());
        let answer = admin_request(&via, "POST", &target, Some(node), body.as_bytes());
        if let Ok((200, _)) = answer {
            return;
        }
    }
}

/// Finds out whether this node is still a member, and says so once when it is not: a
/// removed node never hears from a leader again (none sends to a non-member), so without this
/// it answered "no leader is known" forever without a word. Two ways to learn it: its own
/// membership (a removal it applied, or found in its log at a restart) leaves it out, or,
/// after `REMOVAL_CHECK_LEADERLESS_MS` without a leader, a member it can reach follows a leader
/// whose membership leaves it out (it was removed while it was down). Either way the node
/// stays up, as any start that got as far as serving does (its operator may add it back, and
/// a removal it only has in its log may not have committed), but `/ready` and
/// `/_lithair/cluster` say it was removed, and the log names the way back.
fn check_membership(node: &Node, seen_self: &mut bool, leaderless_since: &mut Option<Instant>) {
    let status = node.status();
    let member = status.members.iter().any(|member| member.id == status.id);
    *seen_self |= member;
    let removal = if !member && *seen_self && !status.members.is_empty() {
        Some(format!(
            "its own membership (log index {}) no longer names it",
            status.last_index
        ))
    } else if member && status.leader == 0 {
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_millis(REMOVAL_CHECK_LEADERLESS_MS) {
            return;
        }
        match removal_seen_by_peers(node, status.id) {
            Some(removal) => Some(removal),
            None => return,
        }
    } else {
        None
    };
    if status.leader != 0 || !member {
        *leaderless_since = None;
    }
    let id = status.id;
    let was_removed = node.removal().is_some();
    node.set_removal(removal.clone());
    match &removal {
        Some(why) if !was_removed => eprintln!(
            "lithair: node {id} is not a member of its cluster any more: it was removed ({why}); \
             it serves nothing. To bring it back, remove its data directory and start it \
             again with --join HOST:PORT (a member's HTTP address)"
        ),
        None if was_removed => {
            eprintln!("lithair: node {id} is a member of its cluster again");
        }
        _ => {}
    }
}

/// Asks the members this node knows an HTTP address of for their status; the first that
/// follows a leader whose membership leaves `me` out says why this node is no member.
fn removal_seen_by_peers(node: &Node, me: u64) -> Option<String> {
    for (peer, _) in node.peer_addrs() {
        let Some(addr) = node.http_addr(peer).filter(|_| peer != me) else {
            continue;
        };
        let Ok((200, answer)) = admin_request(&addr, "GET", LOCAL_STATUS_TARGET, None, b"") else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&answer) else {
            continue;
        };
        let Ok(document) = crate::json::parse(text) else {
            continue;
        };
        let leader = document.get("leader").and_then(|leader| leader.as_u64());
        let commit = document.get("commit_index").and_then(|c| c.as_u64());
        let members = document.get("members").and_then(|m| m.as_array());
        if let (Some(leader), Some(commit), Some(members)) = (leader, commit, members) {
            let ids = members.iter().filter_map(|m| m.get("id")?.as_u64());
            let named = ids.clone().any(|id| id == me);
            if leader != 0 && !members.is_empty() && !named {
                let ids: Vec<String> = ids.map(|id| id.to_string()).collect();
                return Some(format!(
                    "node {peer} follows leader {leader} at commit index {commit} with members {}",
                    ids.join(", ")
                ));
            }
        }
    }
    None
}

fn resolve_peers(node: &Node) {
    let missing = || {
        let status = node.status();
        status
            .members
            .iter()
            .any(|member| member.id != status.id && member.peer_addr.is_none())
    };
    if !missing() {
        return;
    }
    // The leader first (it served the join), then any member whose HTTP address is known
    // (the missing one too: its handshake told its HTTP address, and its status names its
    // own peer address), until none is missing: a member that answers may not know the
    // missing address either (the leader that served the join died before anyone asked it).
    let status = node.status();
    let mut sources: Vec<u64> = vec![status.leader];
    sources.extend(status.members.iter().map(|member| member.id));
    for source in sources.into_iter().filter(|&s| s != 0 && s != status.id) {
        let Some(addr) = node.http_addr(source) else {
            continue;
        };
        if let Ok((200, answer)) = admin_request(&addr, "GET", LOCAL_STATUS_TARGET, None, b"") {
            if learn_peers(node, &answer).is_ok() && !missing() {
                return;
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// The bytes an operator request's HMAC covers.
fn auth_message(method: &str, target: &str, time_ms: u64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{method}\n{target}\n{time_ms}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message
}

/// A nonce no other request signed by this process carries, and (with overwhelming
/// probability) none signed by another process: a random per-process prefix and a counter.
/// Uniqueness is all it needs: the HMAC, not the nonce, makes a signature unforgeable.
fn fresh_auth_nonce() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        // Without the kernel's randomness, the time and pid still set processes apart.
        random::u64().unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        })
    });
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; AUTH_NONCE_BYTES];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&count.to_be_bytes());
    hex(&bytes)
}

/// The three signature headers of a request, signed now with `sign` under a fresh nonce.
fn auth_headers(
    sign: impl Fn(&[u8]) -> [u8; 32],
    method: &str,
    target: &str,
    body: &[u8],
) -> [(String, String); 3] {
    let time_ms = now_ms();
    let nonce = fresh_auth_nonce();
    let tag = sign(&auth_message(method, target, time_ms, &nonce, body));
    [
        (AUTH_TIME_HEADER.to_string(), time_ms.to_string()),
        (AUTH_NONCE_HEADER.to_string(), nonce),
        (AUTH_HEADER.to_string(), hex(&tag)),
    ]
}

/// Signs operator requests made outside a node (the `cluster` subcommands).
fn secret_signer(secret: &[u8]) -> impl Fn(&[u8]) -> [u8; 32] + '_ {
    move |message| crate::crypto::hmac::hmac_sha256(secret, message)
}

/// The signature headers of an operator request made with the cluster `secret` now.
pub fn sign_request(
    secret: &[u8],
    method: &str,
    target: &str,
    body: &[u8],
) -> [(String, String); 3] {
    auth_headers(secret_signer(secret), method, target, body)
}

/// The operator signatures a node accepted whose time is still within the skew window: the
/// same signature again is a replay (every request is signed anew, with its own time).
/// INVARIANT: at most `AUTH_SIGNATURES_REMEMBERED_MAX` entries.
#[derive(Default)]
struct SeenSignatures {
    /// Each accepted signature's time (Unix ms) and tag, in arrival order.
    entries: VecDeque<(u64, Vec<u8>)>,
}

impl SeenSignatures {
    /// Records `tag`, signed at `time_ms`, at `now_ms`; refuses a tag seen before (401) or,
    /// with the table full, any (503).
    fn admit(&mut self, now_ms: u64, time_ms: u64, tag: &[u8]) -> Result<(), (u16, &'static str)> {
        // Those out of the window are refused by their time already.
        self.entries
            .retain(|(time, _)| now_ms.abs_diff(*time) <= AUTH_SKEW_MS_MAX);
        if self.entries.iter().any(|(_, seen)| seen == tag) {
            return Err((
                401,
                "this signature was used already (sign each request anew)",
            ));
        }
        if self.entries.len() >= AUTH_SIGNATURES_REMEMBERED_MAX {
            return Err((503, "too many operator requests; try again later"));
        }
        self.entries.push_back((time_ms, tag.to_vec()));
        assert!(self.entries.len() <= AUTH_SIGNATURES_REMEMBERED_MAX);
        Ok(())
    }
}

/// Why an operator request is refused, or `None` when its signature holds (and was not used
/// before: it is then remembered in `seen`).
fn auth_problem(
    node: &Node,
    seen: &Mutex<SeenSignatures>,
    req: &Request,
) -> Option<(u16, &'static str)> {
    let refused = |why| Some((401, why));
    let time_ms: u64 = match req.header(AUTH_TIME_HEADER).map(str::parse) {
        Some(Ok(time_ms)) => time_ms,
        _ => return refused("missing or malformed signature time"),
    };
    let now = now_ms();
    if now.abs_diff(time_ms) > AUTH_SKEW_MS_MAX {
        return refused("signature time too far from this node's clock");
    }
    let nonce = match req.header(AUTH_NONCE_HEADER) {
        Some(nonce) if unhex(nonce).is_some_and(|bytes| bytes.len() == AUTH_NONCE_BYTES) => nonce,
        _ => return refused("missing or malformed signature nonce"),
    };
    let Some(tag) = req.header(AUTH_HEADER).and_then(unhex) else {
        return refused("missing or malformed signature");
    };
    let message = auth_message(req.method.as_str(), &req.target, time_ms, nonce, &req.body);
    if !node.authenticate(&message, &tag) {
        return refused("bad signature (is the cluster secret the same?)");
    }
    // Every critical section is a retain and a push: a poisoned lock holds whole data.
    let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.admit(now, time_ms, &tag).err()
}

/// One HTTP/1.1 exchange over a fresh connection, signed by `node` when given; returns the
/// status and body.
///
/// # Errors
/// Connection or protocol failures.
fn admin_request(
    addr: &str,
    method: &str,
    target: &str,
    signer: Option<&Node>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let headers = signer.map(|node| auth_headers(|m| node.sign(m), method, target, body));
    exchange_once(
        addr,
        method,
        target,
        headers.as_ref().map_or(&[][..], |h| &h[..]),
        body,
    )
}

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`), allowed
/// `ADMIN_REQUEST_TIMEOUT_MS` to connect and as long for each read and write.
///
/// # Errors
/// Connection or protocol failures.
pub fn exchange_once(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let timeout = Duration::from_millis(ADMIN_REQUEST_TIMEOUT_MS);
    exchange_within(addr, method, target, headers, body, timeout)
}

/// `exchange_once` allowed `timeout` to connect and as long for each read and write.
fn exchange_within(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(addr, timeout)?;
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    let mut reader = BufReader::new(stream);
    let answer = read_response(&mut reader)?;
    let status = answer.response.status;
    let body = answer.response.body.as_bytes().unwrap_or_default().to_vec();
    Ok((status, body))
}

/// The HTTP front of a clustered node: cluster endpoints, then forwarding, then the app.
pub struct ClusterFront {
    router: Arc<Router>,
    /// Linearizable reads of inline routes wait here, not on a worker each.
    reads: Option<Arc<ParkedReads>>,
    node: Arc<Node>,
    replica: Arc<dyn Replica>,
    applied: Arc<AppliedWatch>,
    /// Signed operator requests: blocking, one keep-alive connection each.
    pool: ForwardPool,
    /// Client writes: pipelined, answered through deferred responses.
    forwarder: Forwarder,
    /// Operator signatures accepted lately (a replay is refused).
    seen: Mutex<SeenSignatures>,
}

fn is_write(method: &Method) -> bool {
    !method.is_safe()
}

impl Handler for ClusterFront {
    fn call(&self, req: &mut Request) -> Response {
        if let Some(response) = self.cluster_endpoint(req) {
            return response;
        }
        if req.path == "/ready" {
            if let Some(why) = self.node.removal() {
                // Not "no leader yet": no leader will ever come for a removed node.
                let detail = format!(
                    "this node was removed from its cluster ({why}); to bring it back, remove \
                     its data directory and start it again with --join HOST:PORT"
                );
                return json_error(503, &detail);
            }
        }
        if is_write(&req.method) {
            let planned_forward = req.extensions.remove::<PlannedForward>().is_some();
            if self.node.role() != "leader" {
                // Never waits for the leader (a deferred response): fine on the reactor too,
                // also for a write `plan` made inline while this node led.
                return self.forward_to(req, &req.target, false);
            }
            if planned_forward {
                // Became the leader between head and body: this may be the reactor, where a
                // write that waits for its commit must not run.
                return unavailable("this node just became the leader; try again");
            }
        } else if wants_linearizable(req) {
            match req.extensions.remove::<PlannedRead>() {
                Some(PlannedRead::Confirmed) => {}
                Some(PlannedRead::Parked) => {
                    if let Some(reads) = &self.reads {
                        return reads.run(&self.router, req);
                    }
                }
                Some(PlannedRead::Queued) => {
                    if let Some(reads) = &self.reads {
                        return reads.submit(req);
                    }
                }
                None => {
                    if let Err(detail) = self.await_read_index() {
                        return unavailable(&detail);
                    }
                }
            }
        }
        self.router.call(req)
    }

    /// A follower pipelines forwarded writes of independent clients on one connection (each
    /// client's own writes never overlap: the follower holds its next one until the previous
    /// one is answered), so the leader runs them side by side. A client sending the header
    /// itself only loses the order of its own pipelined writes.
    fn unordered(&self, req: &Request) -> bool {
        req.header(FORWARDED_HEADER).is_some()
    }

    fn is_inline(&self, req: &Request) -> bool {
        // Linearizable reads may wait for a heartbeat round: never on the reactor (unless
        // `plan` confirmed them under the lease).
        !is_write(&req.method) && !wants_linearizable(req) && self.router.is_inline(req)
    }

    /// Plans on the head like the app's router (so a route's body limit is a 413 before the
    /// body is read, also on a follower that would forward the request), but never inline for
    /// what may block here: linearizable reads that must wait, and the `/_lithair/cluster`
    /// endpoints (a digest of the whole state, joins and hand-overs). A write this node
    /// forwards (`forward_is_async`) is inline whatever its route: forwarding answers through
    /// a deferred response and never waits for the leader. On the leader, a write the router
    /// would run inline (a deferred write route) stays inline: the engine answers it once
    /// committed, and `call` forwards it (without waiting) if leadership moved in between.
    fn plan(&self, req: &mut Request) -> HeadPlan {
        let routed = self.router.plan(req);
        if self.forward_is_async(req) {
            req.extensions.insert(PlannedForward);
            return HeadPlan {
                inline: true,
                body_bytes_max: routed.body_bytes_max,
            };
        }
        let write = is_write(&req.method);
        let endpoint = req.path.starts_with(CLUSTER_PATH_PREFIX);
        let linearizable = !write && wants_linearizable(req);
        let inline = if endpoint || !routed.inline {
            false
        } else if write {
            self.plan_write()
        } else {
            !linearizable || self.plan_read(req)
        };
        HeadPlan {
            inline,
            body_bytes_max: routed.body_bytes_max,
        }
    }
}

/// Marks a write `plan` let run on the reactor because it is to be forwarded (`call` must not
/// run it here if the node became the leader meanwhile). Private: nothing else can forge it.
struct PlannedForward;

/// How `plan` arranged a linearizable read of an inline route, for `call` (on the reactor).
/// Private: nothing else can forge it.
enum PlannedRead {
    /// Confirmed under the leader's lease: the read started while the lease held and the
    /// engine had applied the lease's index then, so `call` serves it at once (later state is
    /// a longer prefix of the same committed log).
    Confirmed,
    /// `call` runs it at once and holds the response until a ReadIndex batch that starts
    /// after it ran confirms it (`ParkedReads`; deferred response, no thread waits for it).
    Parked,
    /// Too many reads parked: `call` hands it to the read queue (deferred response).
    Queued,
}

/// Path prefix of the cluster's own endpoints.
const CLUSTER_PATH_PREFIX: &str = "/_lithair/cluster";

/// Whether a read must be linearizable: every application read unless it asks for
/// `consistency=stale` (which serves the local, possibly stale, state at once). The routes
/// that read no state (`/health`, `/openapi.json`, `/docs`) need no confirmation: `/health`
/// says the process is up, and must not turn 503 when the cluster has no leader.
fn wants_linearizable(req: &Request) -> bool {
    !req.path.starts_with("/_lithair")
        && !super::docs::STATELESS_PATHS.contains(&req.path.as_str())
        && !wants_stale(req)
}

/// Whether the request asks for this node's local view (`consistency=stale`).
fn wants_stale(req: &Request) -> bool {
    req.query.split('&').any(|pair| pair == "consistency=stale")
}

fn query_id(req: &Request, key: &str) -> Option<Result<u64, std::num::ParseIntError>> {
    req.query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .map(str::parse)
}

impl ClusterFront {
    /// The front of `node`, serving the app's `router`.
    pub fn new(router: Router, node: Arc<Node>, replica: Arc<dyn Replica>) -> ClusterFront {
        let router = Arc::new(router);
        let confirm: Confirm = {
            let (node, replica) = (Arc::clone(&node), Arc::clone(&replica));
            let (applied, timeout) = (
                node.applied_watch(),
                Duration::from_millis(READ_APPLY_TIMEOUT_MS),
            );
            Box::new(move |round, at_least| {
                confirm(&node, &*replica, &applied, timeout, round, at_least)
            })
        };
        let reads = ParkedReads::start(Arc::clone(&router), &node, Arc::clone(&replica), confirm)
            .map_err(|e| eprintln!("lithair: no read queue ({e}); reads wait on workers"))
            .ok();
        ClusterFront {
            reads,
            router,
            applied: node.applied_watch(),
            node,
            replica,
            pool: ForwardPool::default(),
            seen: Mutex::default(),
            forwarder: Forwarder::new(LinkSettings::standard()),
        }
    }

    fn cluster_endpoint(&self, req: &mut Request) -> Option<Response> {
        let operator = match (&req.method, req.path.as_str()) {
            (Method::Get, "/_lithair/cluster") => return Some(self.status(req)),
            (Method::Post, "/_lithair/cluster/join") => ClusterFront::join,
            (Method::Post, "/_lithair/cluster/leave") => ClusterFront::leave,
            (Method::Post, "/_lithair/cluster/transfer-leader") => ClusterFront::transfer_leader,
            _ => return None,
        };
        match auth_problem(&self.node, &self.seen, req) {
            None => {}
            Some((503, problem)) => return Some(unavailable(problem)),
            Some((status, problem)) => return Some(json_error(status, problem)),
        }
        Some(operator(self, req))
    }

    /// A linearizable read of an inline route stays on the reactor: confirmed from its head
    /// alone (lease mode, on the leader, the lease holding and the engine having applied the
    /// lease's index: no thread hop, no wait), parked (run now, answered when its batch is
    /// confirmed) or, past the parking limit, handed to the read queue.
    /// Marks the request for `call`; `false`: a worker runs it and waits.
    fn plan_read(&self, req: &mut Request) -> bool {
        let confirmed = self
            .node
            .lease_read_index()
            .is_some_and(|index| self.replica.applied_index() >= index);
        let planned = match (confirmed, &self.reads) {
            (true, _) => PlannedRead::Confirmed,
            (false, Some(reads)) if reads.has_room() => PlannedRead::Parked,
            (false, Some(_)) => PlannedRead::Queued,
            (false, None) => return false,
        };
        req.extensions.insert(planned);
        true
    }

    /// A write of an inline route stays on the reactor when this node leads now (it is
    /// submitted, not forwarded; if leadership moves before `call`, `call` forwards it, which
    /// does not wait either).
    fn plan_write(&self) -> bool {
        self.node.role() == "leader"
    }

    /// ReadIndex: waits until the local state holds every write committed before the read.
    fn await_read_index(&self) -> Result<(), String> {
        let timeout = Duration::from_millis(READ_APPLY_TIMEOUT_MS);
        confirm(&self.node, &*self.replica, &self.applied, timeout, true, 0)
    }

    /// `POST /_lithair/cluster/join` with `id=N&peer=HOST:PORT`: the leader records the
    /// peer address and adds the node as a learner (the node promotes it once caught up).
    /// A node already in the configuration gets the same success, so joining is idempotent;
    /// another peer address under a known id is refused (409), and so is a member whose log
    /// (`?last=N`, where the joining node's log ends) ends before the index the leader has
    /// matched on it (its data directory was emptied or restored from an older copy).
    fn join(&self, req: &Request) -> Response {
        let Some(join) = JoinRequest::decode(&req.body) else {
            return json_error(400, "expected `id=N&peer=HOST:PORT`");
        };
        let joiner_last = match query_id(req, "last").transpose() {
            Ok(last) => last,
            Err(_) => return json_error(400, "`last` must be a log index"),
        };
        let status = self.node.status();
        if status.role != "leader" {
            return self.forward_to(req, &req.target, true);
        }
        if join.id == status.id {
            return json_error(409, "that id belongs to the leader");
        }
        // A member the leader has matched past where the joiner's log ends lost entries it
        // acknowledged: the leader would take its rejections for stale ones and never catch
        // it up, and a voter among them may vote again in a term it voted in. Raft's way back
        // is removal, then a join as a new learner.
        let lost = status.members.iter().find(|member| {
            let matched = member.match_index.unwrap_or(0);
            member.id == join.id && joiner_last.is_some_and(|last| last < matched)
        });
        if let Some(member) = lost {
            let detail = format!(
                "node {} is a member whose log the leader has matched up to index {}, but this \
                 node's log ends at {}: its data directory lost entries it acknowledged \
                 (emptied, or restored from an older copy); remove it first (`cluster leave \
                 --id {}` through a live member), then join again from an empty data directory",
                join.id,
                member.match_index.unwrap_or(0),
                joiner_last.unwrap_or(0),
                join.id
            );
            return json_error(409, &detail);
        }
        // A member's id keeps its peer address: a second process joining under a member's id
        // (an operator's slip) would otherwise be told it joined, then vote and answer as
        // that member with an empty log, while the leader kept sending to the first one.
        let known = |status: &ClusterStatus| status.members.iter().any(|m| m.id == join.id);
        let recorded = match self.node.peer_addr(join.id) {
            Some(address) if address != join.peer_addr => {
                if known(&status) {
                    let detail = format!(
                        "node id {} belongs to the node at {address}, not {}: remove it \
                         first, or give this node another id",
                        join.id, join.peer_addr
                    );
                    return json_error(409, &detail);
                }
                // Not a member (removed, its address not forgotten here yet, or named again
                // by a static `--cluster` map): the id joins again from its new place.
                self.node.set_peer_addr(join.id, join.peer_addr.clone())
            }
            _ => self.node.add_peer(join.id, join.peer_addr.clone()),
        };
        if let Err(e) = recorded {
            return json_error(500, &format!("cannot record the peer: {e}"));
        }
        if !known(&status) {
            if let Err(e) = self.propose_patiently(ConfChange::AddLearner(join.id)) {
                return change_refused(&e, join.id);
            }
            if self.wait_status(CONF_CHANGE_WAIT_MS, known).is_none() {
                return unavailable("the membership change did not commit in time");
            }
        }
        json_response(200, self.members_json(join.id))
    }

    /// `{"node_id":N,"members":[{"id":..,"peer":"..","http":".."},..]}`: every peer address
    /// known here, with the member's HTTP address when a handshake told it.
    fn members_json(&self, joined: u64) -> String {
        let mut w = Writer::new();
        w.begin_object();
        w.field("node_id");
        w.u64(joined);
        w.field("members");
        w.begin_array();
        for (id, addr) in self.node.peer_addrs().iter() {
            w.element();
            w.begin_object();
            w.field("id");
            w.u64(*id);
            w.field("peer");
            w.str(addr);
            if let Some(http) = self.node.http_addr(*id) {
                w.field("http");
                w.str(&http);
            }
            w.end_object();
        }
        w.end_array();
        w.end_object();
        finish(w)
    }

    /// `GET /_lithair/cluster`: this node's status. Only a leader tracks how far each member
    /// matches its log, so a follower asks its leader for the members' `match_index` and
    /// `lag` (named in `progress_from`), unless the request says `consistency=stale`; without
    /// a leader that answers as one in time, they are null.
    fn status(&self, req: &Request) -> Response {
        let mut status = self.node.status();
        let progress_from = if status.role == "leader" {
            Some(status.id)
        } else if wants_stale(req) {
            None
        } else {
            self.progress_from_leader(&mut status)
        };
        json_response(200, status_json(&status, progress_from, &*self.replica))
    }

    /// Fills the match index and lag of `status`'s members from the status of the leader
    /// this node follows; the leader's id, or `None` (nothing filled) when no leader is known
    /// or none answered as that leader within `STATUS_PROGRESS_TIMEOUT_MS`. A member the
    /// leader does not list (a membership change it has not applied yet) keeps `None`.
    fn progress_from_leader(&self, status: &mut ClusterStatus) -> Option<u64> {
        let leader = status.leader;
        if leader == 0 || leader == status.id {
            return None;
        }
        let addr = self.node.http_addr(leader)?;
        let timeout = Duration::from_millis(STATUS_PROGRESS_TIMEOUT_MS);
        let (code, body) =
            exchange_within(&addr, "GET", LOCAL_STATUS_TARGET, &[], b"", timeout).ok()?;
        if code != 200 {
            return None;
        }
        let progress = leader_progress(&body, leader)?;
        for member in &mut status.members {
            if let Some(known) = progress.iter().find(|known| known.id == member.id) {
                member.match_index = Some(known.match_index);
                member.lag = Some(known.lag);
                member.replication = known.replication;
                member.last_heard_ms = known.last_heard_ms;
            }
        }
        Some(leader)
    }

    /// Polls this node's status until `done` holds (operator requests only), at most `ms`.
    fn wait_status(&self, ms: u64, done: impl Fn(&ClusterStatus) -> bool) -> Option<ClusterStatus> {
        let started = Instant::now();
        loop {
            let status = self.node.status();
            if done(&status) {
                return Some(status);
            }
            if started.elapsed() > Duration::from_millis(ms) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(STATUS_POLL_MS));
        }
    }

    fn transfer_leader(&self, req: &Request) -> Response {
        let status = self.node.status();
        if status.role != "leader" {
            return self.forward_to(req, &req.target, true);
        }
        let to = match query_id(req, "to") {
            Some(Ok(to)) => to,
            Some(Err(_)) => return json_error(400, "`to` must be a node id"),
            None => match most_caught_up_voter(&status) {
                Some(id) => id,
                None => return json_error(409, "no other voter"),
            },
        };
        match self.node.transfer_leader(to) {
            Ok(()) => json_response(202, format!("{{\"transferring_to\":{to}}}")),
            Err(e) => json_error(409, &e),
        }
    }

    /// `POST /_lithair/cluster/leave[?node=N]`: removes node N (default: this node). The
    /// leader proposes it; any other node forwards it there naming the node. A leader that
    /// is asked to remove itself first hands leadership to the most caught-up voter, so the
    /// cluster is never without a leader for an election timeout.
    fn leave(&self, req: &Request) -> Response {
        let status = self.node.status();
        let leaving = match query_id(req, "node") {
            Some(Ok(id)) => id,
            Some(Err(_)) => return json_error(400, "`node` must be a node id"),
            None => status.id,
        };
        let target = format!("/_lithair/cluster/leave?node={leaving}");
        if status.role != "leader" {
            return self.forward_to(req, &target, true);
        }
        if leaving == status.id {
            if let Some(to) = most_caught_up_voter(&status) {
                // Refused in lease mode (a transfer would break the lease): remove directly,
                // and the leader steps down once the removal commits.
                if self.node.transfer_leader(to).is_ok() {
                    let handed = |s: &ClusterStatus| s.leader != 0 && s.leader != s.id;
                    if self.wait_status(LEAVE_TRANSFER_WAIT_MS, handed).is_some() {
                        return self.forward_to(req, &target, true);
                    }
                }
            }
        }
        match self.propose_patiently(ConfChange::Remove(leaving)) {
            Ok(index) => {
                json_response(202, format!("{{\"removing\":{leaving},\"index\":{index}}}"))
            }
            Err(e) => change_refused(&e, leaving),
        }
    }

    /// Proposes `change`, trying again while it is refused for a passing reason (another
    /// change pending, or a new leader's first entry not committed yet, or a leadership
    /// transfer) and this node still leads, for at most `CONF_CHANGE_WAIT_MS`. A final
    /// refusal (an invalid change) returns at once: waiting would not change the answer.
    fn propose_patiently(&self, change: ConfChange) -> Result<u64, RaftError> {
        let started = Instant::now();
        loop {
            let refusal = match self.node.propose_conf_change(change) {
                Ok(index) => return Ok(index),
                Err(refusal) => refusal,
            };
            let passing = matches!(
                refusal,
                RaftError::ConfChangePending | RaftError::TransferInProgress
            );
            let waited = started.elapsed() > Duration::from_millis(CONF_CHANGE_WAIT_MS);
            if !passing || waited || self.node.status().role != "leader" {
                return Err(refusal);
            }
            std::thread::sleep(Duration::from_millis(STATUS_POLL_MS));
        }
    }

    /// Sends `req` to the leader with another target (re-signed when `sign`, since the
    /// signature covers the target) and relays its answer; 503 + `Retry-After` without one.
    /// Client writes (`!sign`) go through the pipelined link and get a deferred response;
    /// signed operator requests wait for the leader on this thread.
    fn forward_to(&self, req: &Request, target: &str, sign: bool) -> Response {
        if req.header(FORWARDED_HEADER).is_some() {
            return unavailable("this node is not the leader (forwarded request)");
        }
        let (own, leader) = self.node.leader();
        if leader == 0 || leader == own {
            return unavailable("no leader is known yet");
        }
        let Some(addr) = self.node.http_addr(leader) else {
            return unavailable("the leader's address is not known yet");
        };
        if !sign {
            let (placeholder, responder) = Response::deferred();
            let request = encode_forward(req, target, &addr);
            self.forwarder.send(&addr, request, responder);
            return placeholder;
        }
        let method = req.method.as_str();
        let mut headers: Vec<(String, Vec<u8>)> = req
            .headers_raw()
            .filter(|(name, _)| forwardable(name, sign))
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect();
        if sign {
            let node = &self.node;
            let signed = auth_headers(|m| node.sign(m), method, target, &req.body);
            headers.extend(signed.map(|(name, value)| (name, value.into_bytes())));
        }
        headers.push((FORWARDED_HEADER.to_string(), b"1".to_vec()));
        let request = Outgoing {
            method,
            target,
            headers: &headers,
            body: &req.body,
        };
        match self.pool.exchange(&addr, &request) {
            Ok(response) => response,
            Err(e) => unavailable(&format!("cannot reach the leader at {addr}: {e}")),
        }
    }

    /// Whether `req` is a client write this node forwards through the pipelined link:
    /// `forward_to` then answers with a deferred response at once (no thread waits for the
    /// leader), so the request may run on the reactor whatever its route (the route runs on
    /// the leader). A write, not to the cluster endpoints (signed; they keep the blocking
    /// path), not forwarded already, while this node does not lead. `plan` asks it first.
    fn forward_is_async(&self, req: &Request) -> bool {
        is_write(&req.method)
            && !req.path.starts_with(CLUSTER_PATH_PREFIX)
            && req.header(FORWARDED_HEADER).is_none()
            && self.node.role() != "leader"
    }
}

/// Whether a client's header travels with a forwarded request (not hop-by-hop or framing,
/// not `Expect` (this node read the body already; a `100 Continue` from the leader would be
/// taken for its answer), and not an old signature when the request is re-signed).
fn forwardable(name: &str, resigned: bool) -> bool {
    const NOT_FORWARDED: [&str; 7] = [
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "te",
        "expect",
    ];
    let is = |other: &str| name.eq_ignore_ascii_case(other);
    let hop = NOT_FORWARDED.iter().any(|other| is(other));
    let signature = is(AUTH_HEADER) || is(AUTH_TIME_HEADER) || is(AUTH_NONCE_HEADER);
    !(hop || (resigned && signature))
}

/// Room reserved for a forwarded request's head, in bytes (a guess; the buffer grows).
const FORWARD_HEAD_BYTES_GUESS: usize = 512;

/// A client's request as forwarded to the leader at `host` with `target` (unsigned): the
/// forwardable headers, the forwarded mark and the body, built in one buffer (this runs on
/// the reactor, once per forwarded write).
fn encode_forward(req: &Request, target: &str, host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORWARD_HEAD_BYTES_GUESS + req.body.len());
    for part in [
        req.method.as_str(),
        " ",
        target,
        " HTTP/1.1\r\nHost: ",
        host,
        "\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    // As received: a value that was not UTF-8 reaches the leader unchanged.
    for (name, value) in req.headers_raw() {
        if forwardable(name, false) {
            for part in [name.as_bytes(), b": ", value, b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
    }
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{FORWARDED_HEADER}: 1\r\nContent-Length: {}\r\n\r\n",
        req.body.len()
    );
    out.extend_from_slice(&req.body);
    out
}

fn most_caught_up_voter(status: &ClusterStatus) -> Option<u64> {
    status
        .members
        .iter()
        .filter(|m| m.voter && m.id != status.id)
        .max_by_key(|m| m.match_index)
        .map(|m| m.id)
}

fn json_response(status: u16, body: impl Into<String>) -> Response {
    Response::bytes(status, "application/json", body.into().into_bytes())
}

/// An error answer of the cluster front and its operator routes: `application/problem+json`
/// (RFC 9457), as every other error of the server is (issue 3), with the detail also in
/// `error`, the member these answers carried before, for clients that read it.
fn json_error(status: u16, detail: &str) -> Response {
    crate::http::problem::Problem::new(status)
        .with_detail(detail)
        .with_extension_raw("error", json::quote(detail))
        .into_response()
}

/// The answer to a membership change the leader refused: 409 when the change itself is
/// invalid (asking again changes nothing), else 503 + `Retry-After` (another change or a
/// hand-over in progress, or leadership lost: the request was not carried out).
fn change_refused(refusal: &RaftError, node: u64) -> Response {
    match refusal {
        RaftError::InvalidRequest(why) => json_error(409, &format!("node {node}: {why}")),
        other => unavailable(&other.to_string()),
    }
}

/// 503 with `Retry-After`: the client should try again (here or at another node).
pub(crate) fn unavailable(detail: &str) -> Response {
    json_error(503, detail).with_header("Retry-After", "1")
}

/// The text of a document written with integers, booleans and strings only.
fn finish(w: Writer) -> String {
    w.finish()
        .expect("only a non-finite float fails a JSON document")
}

fn u64_field(w: &mut Writer, name: &str, value: u64) {
    w.field(name);
    w.u64(value);
}

fn optional_u64_field(w: &mut Writer, name: &str, value: Option<u64>) {
    w.field(name);
    match value {
        Some(value) => w.u64(value),
        None => w.null(),
    }
}

fn optional_str_field(w: &mut Writer, name: &str, value: Option<&str>) {
    w.field(name);
    match value {
        Some(value) => w.str(value),
        None => w.null(),
    }
}

/// One member's progress as its leader reports it in its status document.
#[derive(Debug, PartialEq, Eq)]
struct MemberProgress {
    id: u64,
    match_index: u64,
    lag: u64,
    /// `None` for the leader itself (and from a leader that does not say).
    replication: Option<&'static str>,
    last_heard_ms: Option<u64>,
}

/// Each member's progress in leader `leader`'s status document (`body`), or `None` unless it
/// is the document of that node leading (a node that lost leadership since tracks nobody's
/// progress) and gives every member's match index and lag.
fn leader_progress(body: &[u8], leader: u64) -> Option<Vec<MemberProgress>> {
    let document = json::parse(std::str::from_utf8(body).ok()?).ok()?;
    let role = document.get("role")?.as_str()?;
    if role != "leader" || document.get("node_id")?.as_u64()? != leader {
        return None;
    }
    let members = document.get("members")?.as_array()?;
    let progress = |member: &json::Value| {
        let replication = member.get("replication").and_then(json::Value::as_str);
        Some(MemberProgress {
            id: member.get("id")?.as_u64()?,
            match_index: member.get("match_index")?.as_u64()?,
            lag: member.get("lag")?.as_u64()?,
            replication: replication
                .and_then(Replication::from_name)
                .map(Replication::name),
            last_heard_ms: member.get("last_heard_ms").and_then(json::Value::as_u64),
        })
    };
    members.iter().map(progress).collect()
}

/// The `/_lithair/cluster` document. `progress_from`: the node the members' match index
/// and lag come from (this node when it leads; `None`: unknown here, and null).
pub fn status_json(
    status: &ClusterStatus,
    progress_from: Option<u64>,
    replica: &dyn Replica,
) -> String {
    let (applied_event, digest) = replica.applied_digest();
    let mut w = Writer::new();
    w.begin_object();
    u64_field(&mut w, "node_id", status.id);
    w.field("role");
    w.str(status.role);
    u64_field(&mut w, "term", status.term);
    u64_field(&mut w, "leader", status.leader);
    u64_field(&mut w, "commit_index", status.commit);
    u64_field(&mut w, "applied_index", status.applied);
    u64_field(&mut w, "last_index", status.last_index);
    u64_field(&mut w, "applied_event_index", applied_event);
    w.field("digest");
    w.str(&digest_hex(&digest));
    u64_field(&mut w, "snapshot_index", status.snapshot_index);
    u64_field(&mut w, "snapshots_installed", status.snapshots_installed);
    u64_field(
        &mut w,
        "snapshot_sends_restarted",
        status.snapshot_sends_restarted,
    );
    u64_field(&mut w, "sequencer_rebuilds", replica.sequencer_rebuilds());
    u64_field(&mut w, "batched_reads", status.batched_reads);
    u64_field(&mut w, "read_batches", status.read_batches);
    optional_str_field(&mut w, "removed", status.removed.as_deref());
    optional_u64_field(&mut w, "progress_from", progress_from);
    w.field("members");
    w.begin_array();
    for member in &status.members {
        w.element();
        w.begin_object();
        u64_field(&mut w, "id", member.id);
        w.field("voter");
        w.bool(member.voter);
        optional_u64_field(&mut w, "match_index", member.match_index);
        optional_u64_field(&mut w, "lag", member.lag);
        optional_str_field(&mut w, "replication", member.replication);
        optional_u64_field(&mut w, "last_heard_ms", member.last_heard_ms);
        optional_str_field(&mut w, "http", member.http_addr.as_deref());
        optional_str_field(&mut w, "peer", member.peer_addr.as_deref());
        w.end_object();
    }
    w.end_array();
    w.end_object();
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(flags: &str) -> NodeConfig {
        node_config(&options_of(flags), None, "secret".into()).expect("a node config")
    }

    fn options_of(flags: &str) -> ServeOptions {
        let args: Vec<String> = flags.split_whitespace().map(String::from).collect();
        let no_env = |_: &str| None;
        let sources = super::super::cli::Sources {
            app_name: "test",
            extra_flags: &[],
            env: &no_env,
            config_file: None,
        };
        match super::super::cli::parse(&args, &sources) {
            Ok(super::super::cli::Command::Serve(options)) => options,
            other => panic!("expected serve for `{flags}`, got {other:?}"),
        }
    }

    /// Issue 7's bootstrap and join commands name no secret: on loopback alone a node starts
    /// on the built-in one; anything off loopback still needs a secret, and a given one wins.
    #[test]
    fn only_a_cluster_on_loopback_alone_may_go_without_a_secret() {
        let map = "--cluster 1@127.0.0.1:9081,2@127.0.0.1:9082,3@127.0.0.1:9083";
        let on_loopback = [
            format!("serve --node-id 1 --port 8081 --peer-port 9081 --data d1 {map}"),
            "serve --node-id 4 --port 8084 --peer-port 9084 --data d4 --join 127.0.0.1:8081"
                .to_string(),
        ];
        let off_loopback = [
            format!("serve --node-id 1 --peer-port 9081 --bind 0.0.0.0 {map}"),
            "serve --node-id 1 --peer-port 9081 --cluster 1@127.0.0.1:9081,2@10.0.0.2:9082"
                .to_string(),
            "serve --node-id 4 --peer-port 9084 --join 10.0.0.1:8081".to_string(),
        ];
        // The environment may hold a secret; the flag is given explicitly where it matters.
        let env_secret = cluster_secret(None);
        for flags in &on_loopback {
            let options = options_of(flags);
            assert!(loopback_only(&options), "{flags}");
            let expected = env_secret.as_deref().unwrap_or(LOOPBACK_CLUSTER_SECRET);
            assert_eq!(node_secret(&options).as_deref(), Ok(expected), "{flags}");
            let given = options_of(&format!("{flags} --cluster-secret s"));
            assert_eq!(node_secret(&given).as_deref(), Ok("s"), "{flags}");
        }
        for flags in &off_loopback {
            let options = options_of(flags);
            assert!(!loopback_only(&options), "{flags}");
            if env_secret.is_none() {
                let refused = node_secret(&options).expect_err(flags);
                assert!(refused.contains("--cluster-secret"), "{flags}: {refused}");
            }
            let given = options_of(&format!("{flags} --cluster-secret s"));
            assert_eq!(node_secret(&given).as_deref(), Ok("s"), "{flags}");
        }
    }

    #[test]
    fn a_node_told_to_listen_elsewhere_than_its_map_entry_is_warned() {
        let map = "--cluster 1@127.0.0.1:9081,2@127.0.0.1:9082";
        let agreeing = config_of(&format!("serve --node-id 1 --peer-port 9081 {map}"));
        assert_eq!(advertised_port_note(&agreeing), None);
        let apart = config_of(&format!("serve --node-id 1 --peer-port 9082 {map}"));
        let note = advertised_port_note(&apart).expect("a warning");
        assert!(
            note.contains("127.0.0.1:9081") && note.contains("9082"),
            "{note}"
        );
        // A joining node announces the port it listens on.
        let joining = config_of("serve --node-id 3 --peer-port 9083 --join 127.0.0.1:8081");
        assert_eq!(advertised_port_note(&joining), None);
    }

    #[test]
    fn join_requests_round_trip_and_reject_bad_input() {
        let join = JoinRequest {
            id: 4,
            peer_addr: "127.0.0.1:9084".into(),
        };
        assert_eq!(JoinRequest::decode(join.encode().as_bytes()), Some(join));
        for bad in [
            "",
            "id=0&peer=127.0.0.1:1",
            "id=4",
            "id=4&peer=nowhere",
            "id=x&peer=1.2.3.4:5",
            "id=4&peer=1.2.3.4:5&x=1",
        ] {
            assert_eq!(JoinRequest::decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_signature_is_accepted_once_within_its_window_and_the_table_is_bounded() {
        let mut seen = SeenSignatures::default();
        let now = 10 * AUTH_SKEW_MS_MAX;
        assert_eq!(seen.admit(now, now, b"a"), Ok(()));
        assert_eq!(seen.admit(now, now, b"a").map_err(|e| e.0), Err(401));
        // Once out of the window it is forgotten (its time refuses it anyway).
        let later = now + AUTH_SKEW_MS_MAX + 1;
        assert_eq!(seen.admit(later, later, b"b"), Ok(()));
        assert_eq!(seen.entries.len(), 1);
        for n in 1..AUTH_SIGNATURES_REMEMBERED_MAX {
            assert_eq!(seen.admit(later, later, &n.to_le_bytes()), Ok(()));
        }
        assert_eq!(seen.admit(later, later, b"c").map_err(|e| e.0), Err(503));
    }

    #[test]
    fn signatures_cover_method_target_time_nonce_and_body() {
        let sign = secret_signer(b"secret");
        let message = auth_message("POST", "/_lithair/cluster/leave", 5, "n1", b"");
        let tag = sign(&message);
        assert_eq!(unhex(&hex(&tag)).as_deref(), Some(&tag[..]));
        for other in [
            auth_message("GET", "/_lithair/cluster/leave", 5, "n1", b""),
            auth_message("POST", "/_lithair/cluster/leave?node=2", 5, "n1", b""),
            auth_message("POST", "/_lithair/cluster/leave", 6, "n1", b""),
            auth_message("POST", "/_lithair/cluster/leave", 5, "n2", b""),
            auth_message("POST", "/_lithair/cluster/leave", 5, "n1", b"x"),
        ] {
            assert_ne!(sign(&other), tag);
        }
        assert_ne!(secret_signer(b"other")(&message), tag);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    /// Two requests alike, signed in the same millisecond (an operator's and a follower's
    /// re-signed forward of the same leave, say) carry different signatures: the second used
    /// to be refused as a replay of the first.
    #[test]
    fn requests_signed_alike_in_one_millisecond_carry_different_signatures() {
        let target = "/_lithair/cluster/leave?node=7";
        let same_millisecond = (0..10_000).find_map(|_| {
            let first = sign_request(b"secret", "POST", target, b"");
            let second = sign_request(b"secret", "POST", target, b"");
            (first[0] == second[0]).then_some((first, second))
        });
        let (first, second) = same_millisecond.expect("two signatures within one millisecond");
        assert_eq!(first[1].0, AUTH_NONCE_HEADER);
        assert_ne!(first[1].1, second[1].1, "fresh nonces");
        assert_ne!(first[2].1, second[2].1, "different signatures");
        let mut seen = SeenSignatures::default();
        let time: u64 = first[0].1.parse().expect("a time");
        for headers in [&first, &second] {
            let tag = unhex(&headers[2].1).expect("hex");
            assert_eq!(seen.admit(time, time, &tag), Ok(()));
        }
    }

    #[test]
    fn forwarded_requests_keep_end_to_end_headers_only() {
        let mut req = Request::new(Method::Post, "/api/items?x=1");
        for (name, value) in [
            ("Host", "client"),
            ("Content-Type", "application/json"),
            ("connection", "close"),
            ("Idempotency-Key", "k1"),
            ("Expect", "100-continue"),
            ("Transfer-Encoding", "chunked"),
            (AUTH_HEADER, "tag"),
            (AUTH_NONCE_HEADER, "nonce"),
        ] {
            req.headers.append(name, value);
        }
        req.body = b"{}".to_vec();
        let bytes = encode_forward(&req, "/api/items?x=1", "leader:1");
        let text = String::from_utf8(bytes).expect("ASCII");
        assert_eq!(
            text,
            "POST /api/items?x=1 HTTP/1.1\r\nHost: leader:1\r\nContent-Type: application/json\r\n\
             Idempotency-Key: k1\r\nx-lithair-auth: tag\r\nx-lithair-auth-nonce: nonce\r\n\
             x-lithair-forwarded: 1\r\n\
             Content-Length: 2\r\n\r\n{}"
        );
        // A value that arrived not UTF-8 goes on as received, not as its U+FFFD text.
        let mut raw = crate::http::RawHeaderValues::default();
        raw.push("Cookie", "n=caf\u{fffd}", b"n=caf\xe9");
        let mut latin1 = Request::new(Method::Post, "/api/items");
        latin1.headers.append("Cookie", "n=caf\u{fffd}");
        latin1.extensions.insert(raw);
        let bytes = encode_forward(&latin1, "/api/items", "leader:1");
        let cookie = b"\r\nCookie: n=caf\xe9\r\n";
        assert!(
            bytes.windows(cookie.len()).any(|w| w == cookie),
            "{bytes:?}"
        );
        assert!(!forwardable("X-LITHAIR-AUTH", true));
        assert!(!forwardable("X-Lithair-Auth-Nonce", true));
        assert!(forwardable("X-LITHAIR-AUTH", false));
        assert!(!forwardable("Keep-Alive", false));
    }

    #[test]
    fn errors_are_json_with_escaped_detail() {
        let response = json_error(400, "bad \"peer\"\n");
        let crate::http::Body::Bytes(bytes) = response.body else {
            panic!("an owned JSON body");
        };
        let body = String::from_utf8(bytes).expect("UTF-8");
        let parsed = json::parse(&body).expect("valid JSON");
        assert_eq!(parsed["error"].as_str(), Some("bad \"peer\"\n"));
        // Issue 3: errors are problem+json, these included.
        assert_eq!(
            response.headers.get("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(parsed["status"].as_u64(), Some(400));
        assert_eq!(parsed["detail"].as_str(), Some("bad \"peer\"\n"));
        assert_eq!(
            unavailable("no leader").headers.get("retry-after"),
            Some("1")
        );
    }

    /// A follower takes the members' progress only from the node it follows, answering as
    /// that node leading: not from a node that lost leadership since, nor from another one,
    /// nor from a document missing a figure.
    #[test]
    fn progress_comes_only_from_the_leader_that_is_asked() {
        let document = |node: u64, role: &str, lag: &str| {
            format!(
                r#"{{"node_id":{node},"role":"{role}","members":[{{"id":1,"match_index":9,"lag":0,"replication":null,"last_heard_ms":null}},{{"id":2,"match_index":4,"lag":{lag},"replication":"probe","last_heard_ms":5020}}]}}"#
            )
        };
        let leading = document(1, "leader", "5");
        let member = |id, match_index, lag, replication, last_heard_ms| MemberProgress {
            id,
            match_index,
            lag,
            replication,
            last_heard_ms,
        };
        assert_eq!(
            leader_progress(leading.as_bytes(), 1),
            Some(vec![
                member(1, 9, 0, None, None),
                member(2, 4, 5, Some("probe"), Some(5020))
            ])
        );
        let odd = leading.replace(r#""probe""#, r#""teleport""#);
        assert_eq!(
            leader_progress(odd.as_bytes(), 1).map(|members| members[1].replication),
            Some(None),
            "a way this node does not know reads as unknown"
        );
        assert_eq!(leader_progress(leading.as_bytes(), 3), None, "another node");
        let deposed = document(1, "follower", "5");
        assert_eq!(leader_progress(deposed.as_bytes(), 1), None, "not leading");
        let unknown = document(1, "leader", "null");
        assert_eq!(
            leader_progress(unknown.as_bytes(), 1),
            None,
            "a figure missing"
        );
        assert_eq!(leader_progress(b"{\"node_id\":1", 1), None, "not JSON");
        assert_eq!(leader_progress(&[0xff, 0xfe], 1), None, "not UTF-8");
    }
}
