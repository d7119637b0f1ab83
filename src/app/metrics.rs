//! `GET /_lithair/metrics`: an app's figures in the Prometheus text exposition format (0.0.4),
//! for a scraper: the engine's applied index, fsyncs, log and snapshot sizes, each model's
//! record count, the process's resident memory and the time it has served, and what its
//! server did (answers, their times, connections, worker pool); a clustered node adds its
//! Raft figures, from its own status (a scrape never asks another node, since a scraper asks
//! every node itself). docs/METRICS.md lists them all.
//!
//! Owns: the metric names, their help texts and the text format.
//! Must not: take the state's write lock or wait for anything: a scrape reads counters, the
//! state once under its read lock, `/proc/self/status` and the log directory's listing.

use super::handle::Handle;
use crate::http::middleware::{Compression, GzipCacheStats};
use crate::http::route_stats::RouteStats;
use crate::http::router::Router;
use crate::http::stats::{RequestKind, ServerStats, DURATION_BOUNDS_US};
use crate::http::{Request, Response};
use crate::raft::node::{ClusterStatus, Node};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// Where the metrics are served.
pub const METRICS_PATH: &str = "/_lithair/metrics";

/// The text exposition format's media type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric's kind, as its `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets (written by [`Metrics::histogram`]).
    Histogram,
}

/// A metrics document being written: each metric once, with its `# HELP` and `# TYPE` lines
/// and then its samples.
#[derive(Debug, Default)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// An empty document.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// One metric with a single sample. `name` and `help` are the caller's constants:
    /// `name` must be a valid metric name and `help` one line.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<f64>) {
        self.labeled(name, kind, help, "", [(String::new(), value.into())]);
    }

    /// One metric of `kind` with a single sample for each `(name, help, value)`, as
    /// [`Metrics::single`] writes it.
    pub fn singles<'a>(
        &mut self,
        kind: Kind,
        metrics: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
    ) {
        for (name, help, value) in metrics {
            self.single(name, kind, help, value);
        }
    }

    /// One metric with a sample per label value (`label="value"`; values are escaped).
    pub fn labeled(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (String, f64)>,
    ) {
        assert!(
            kind != Kind::Histogram,
            "histograms are written by `histogram`"
        );
        self.header(name, kind, help);
        for (label_value, value) in samples {
            let labels = match label {
                "" => String::new(),
                label => render_labels([label], [&label_value]),
            };
            self.sample(name, &labels, value);
        }
    }

    /// One metric with a sample per set of values of the labels `names` (each sample's
    /// values in the order of `names`; values are escaped).
    pub fn labeled_by<'a, const N: usize>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        names: [&str; N],
        samples: impl IntoIterator<Item = ([&'a str; N], f64)>,
    ) {
        assert!(
            kind != Kind::Histogram,
            "histograms are written by `histogram`"
        );
        self.header(name, kind, help);
        for (values, value) in samples {
            self.sample(name, &render_labels(names, values), value);
        }
    }

    /// One sample line: `name{labels} value` (`labels` rendered, or empty).
    fn sample(&mut self, name: &str, labels: &str, value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let _ = write!(self.text, "{{{labels}}}");
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// One histogram: `counts[i]` observations at or below `bounds[i]` and above the bound
    /// before it, `counts[bounds.len()]` those above the last bound (so `counts` has one more
    /// element than `bounds`, which rise strictly), and `sum`, the observations' total.
    /// Written as the format wants it: cumulative `_bucket{le=...}` samples ending with
    /// `+Inf`, then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        self.header(name, Kind::Histogram, help);
        self.histogram_samples(name, bounds, "", counts, sum);
    }

    /// One histogram per value of `label` (`(value, counts, sum)` each, as in
    /// [`Metrics::histogram`]), under one `# HELP` and `# TYPE`.
    pub fn histograms<'a>(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        label: &str,
        series: impl IntoIterator<Item = (&'a str, &'a [u64], f64)>,
    ) {
        let series = series
            .into_iter()
            .map(|(value, counts, sum)| ([value], counts, sum));
        self.histograms_by(name, help, bounds, [label], series);
    }

    /// One histogram per set of values of the labels `names` (`(values, counts, sum)` each,
    /// as in [`Metrics::histogram`]), under one `# HELP` and `# TYPE`.
    pub fn histograms_by<'a, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        names: [&str; N],
        series: impl IntoIterator<Item = ([&'a str; N], &'a [u64], f64)>,
    ) {
        self.header(name, Kind::Histogram, help);
        for (values, counts, sum) in series {
            let labels = render_labels(names, values);
            self.histogram_samples(name, bounds, &labels, counts, sum);
        }
    }

    /// A histogram's samples, each with `labels` (`name="value"` pairs, escaped, or empty).
    fn histogram_samples(
        &mut self,
        name: &str,
        bounds: &[f64],
        labels: &str,
        counts: &[u64],
        sum: f64,
    ) {
        assert_eq!(
            counts.len(),
            bounds.len() + 1,
            "one bucket above the last bound"
        );
        assert!(
            bounds.windows(2).all(|pair| pair[0] < pair[1]),
            "bounds must rise"
        );
        let (braced, before_le) = match labels {
            "" => (String::new(), String::new()),
            labels => (format!("{{{labels}}}"), format!("{labels},")),
        };
        let mut cumulative = 0u64;
        for (k, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = bounds
                .get(k)
                .map_or("+Inf".to_string(), |&bound| number(bound));
            let _ = writeln!(
                self.text,
                "{name}_bucket{{{before_le}le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(self.text, "{name}_sum{braced} {}", number(sum));
        let _ = writeln!(self.text, "{name}_count{braced} {cumulative}");
    }

    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        assert!(is_metric_name(name), "bad metric name {name:?}");
        assert!(!help.contains('\n'), "a help text is one line");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// The document.
    pub fn finish(self) -> String {
        self.text
    }

    /// The document as an answer.
    pub fn into_response(self) -> Response {
        Response::bytes(200, METRICS_CONTENT_TYPE, self.text.into_bytes())
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the format's metric (and, without `:`, label) names.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Labels as a sample carries them inside its braces: `a="x",b="y"` (values escaped).
fn render_labels<const N: usize>(names: [&str; N], values: [&str; N]) -> String {
    let mut out = String::new();
    for (k, (name, value)) in names.iter().zip(values).enumerate() {
        assert!(
            is_metric_name(name) && !name.contains(':'),
            "bad label name {name:?}"
        );
        if k > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out
}

/// A label value as the format quotes it: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: an integer below 2^53 without a fraction, a huge or tiny one in exponent
/// form, any other as Rust prints it (the shortest text that reads back the same).
fn number(value: f64) -> String {
    const EXACT_INTEGER_MAX: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_MAX {
        format!("{}", value as i64)
    } else if value.abs() >= EXACT_INTEGER_MAX || value.abs() < 1e-6 {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// The resident memory of this process in bytes, from `/proc/self/status` (`None` where
/// there is no such file).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An app's own figures (every node, clustered or not), with its server's answers when
/// `http` counts them.
pub(crate) fn app_metrics(
    handle: &Handle,
    http: Option<&ServerStats>,
    serving_since: Instant,
) -> Metrics {
    let engine = handle.engine();
    let mut metrics = Metrics::new();
    if let Some(http) = http {
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        metrics.labeled(
            "lithair_http_responses_total",
            Kind::Counter,
            "HTTP responses written, by status class.",
            "class",
            classes
                .iter()
                .zip(http.responses_by_class())
                .map(|(class, count)| (class.to_string(), count as f64)),
        );
        http_connection_metrics(&mut metrics, http);
    }
    let tail = engine.snapshot_tail();
    metrics.singles(
        Kind::Gauge,
        [
            (
                "lithair_engine_applied_index",
                "Index of the last event applied to the in-memory state.",
                engine.applied_index() as f64,
            ),
            (
                "lithair_log_events_since_snapshot",
                "Events logged since the newest snapshot began (the next comes at the app's period).",
                tail.events as f64,
            ),
            (
                "lithair_log_bytes_since_snapshot",
                "Log bytes written since the newest snapshot began.",
                tail.bytes as f64,
            ),
            (
                "lithair_snapshot_bytes",
                "Size of the newest snapshot file (0: none yet).",
                tail.snapshot_bytes as f64,
            ),
        ],
    );
    metrics.singles(
        Kind::Counter,
        [
            (
                "lithair_log_fsyncs_total",
                "fdatasync calls of the event log since the process started.",
                engine.fsync_count() as f64,
            ),
            (
                "lithair_log_fsync_seconds_total",
                "Time spent in those fdatasync calls.",
                engine.fsync_time().as_secs_f64(),
            ),
        ],
    );
    if let Some(bytes) = engine.log_disk_bytes() {
        metrics.single(
            "lithair_log_disk_bytes",
            Kind::Gauge,
            "Bytes of the log's files on disk, preallocated space included.",
            bytes as f64,
        );
    }
    let records = handle.read(|state| state.summary());
    metrics.labeled(
        "lithair_records",
        Kind::Gauge,
        "Records each model holds.",
        "model",
        records
            .into_iter()
            .map(|(model, count)| (model.to_string(), count as f64)),
    );
    if let Some(bytes) = resident_bytes() {
        metrics.single(
            "lithair_process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory of the process.",
            bytes as f64,
        );
    }
    metrics.single(
        "lithair_serving_seconds",
        Kind::Gauge,
        "Time since the app started serving.",
        serving_since.elapsed().as_secs_f64(),
    );
    metrics
}

/// The server's connections, its worker pool and its answers' times.
fn http_connection_metrics(metrics: &mut Metrics, http: &ServerStats) {
    let (connections, workers, polling) = (http.connections(), http.workers(), http.polling());
    let bodies = http.bodies();
    metrics.singles(
        Kind::Gauge,
        [
            (
                "lithair_http_connections_open",
                "HTTP connections open (upgraded ones, WebSockets, included).",
                connections.open as f64,
            ),
            (
                "lithair_http_workers",
                "Worker threads that run the handlers which may block.",
                workers.threads as f64,
            ),
            (
                "lithair_http_workers_busy",
                "Worker threads running a request now.",
                workers.busy as f64,
            ),
            (
                "lithair_http_worker_queue_jobs",
                "Requests waiting for a worker thread.",
                workers.queued as f64,
            ),
            (
                "lithair_http_request_bodies_held_bytes",
                "Bytes of request bodies the server holds now, counted against its body budget.",
                bodies.held_bytes as f64,
            ),
        ],
    );
    metrics.singles(
        Kind::Counter,
        [
            (
                "lithair_http_connections_accepted_total",
                "HTTP connections admitted.",
                connections.accepted as f64,
            ),
            (
                "lithair_http_connections_refused_total",
                "HTTP connections refused past the connection limit (answered 503 and closed).",
                connections.refused as f64,
            ),
            (
                "lithair_http_request_bodies_refused_total",
                "Request bodies refused because the server's body budget could not take them (answered 503 with Retry-After).",
                bodies.refused as f64,
            ),
            (
                "lithair_http_worker_queue_refused_total",
                "Requests refused because the worker queue was full or the server was stopping (answered 503 with Retry-After).",
                workers.refused as f64,
            ),
            (
                "lithair_http_polls_caught_total",
                "Idle spells of the reactors that polling ended with an event (a wake-up saved).",
                polling.caught as f64,
            ),
            (
                "lithair_http_sleeps_total",
                "Idle spells of the reactors that ended asleep in the kernel (while polling is enabled).",
                polling.sleeps as f64,
            ),
            (
                "lithair_http_poll_seconds_total",
                "Time the reactors spent polling for events instead of sleeping (wall time: the CPU it takes on a CPU of their own).",
                polling.polled_us as f64 / 1e6,
            ),
        ],
    );
    let bounds = DURATION_BOUNDS_US.map(|us| us as f64 / 1e6);
    let kinds = RequestKind::ALL.map(|kind| (kind.name(), http.durations(kind)));
    metrics.histograms(
        "lithair_http_request_duration_seconds",
        "Time from a complete request to its answer queued for writing, reads and writes apart, on the reactor's clock (read once per wakeup, and at the answer on the kernel's coarse clock: a quick answer given within the wakeup that read its request counts 0, a slow one its time to within a tick).",
        &bounds,
        "kind",
        kinds.iter().map(|(name, durations)| {
            let sum = durations.sum_us as f64 / 1e6;
            (*name, &durations.buckets[..], sum)
        }),
    );
}

/// Each route's answers by status class and its handlers' times, for the routes that have
/// answered (the label set is the app's route table: bounded by its code, not its clients).
fn route_metrics(metrics: &mut Metrics, stats: &RouteStats) {
    let routes = stats.routes();
    if routes.is_empty() {
        return;
    }
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    let answers = routes.iter().flat_map(|route| {
        classes
            .iter()
            .zip(route.responses_by_class)
            .map(|(class, count)| {
                let labels = [route.method.as_str(), route.pattern.as_str(), *class];
                (labels, count as f64)
            })
    });
    metrics.labeled_by(
        "lithair_http_route_responses_total",
        Kind::Counter,
        "Answers of each route's handler, by method, route pattern and status class.",
        ["method", "route", "class"],
        answers,
    );
    let bounds = DURATION_BOUNDS_US.map(|us| us as f64 / 1e6);
    metrics.histograms_by(
        "lithair_http_route_handler_seconds",
        "Time each route's handler took, from its dispatch to its answer (its own middleware and a write's commit included; queueing for a worker and sending not; a handler run inline on a reactor is timed on the kernel's coarse clock: a quick one counts 0, a slow one its time to within a tick).",
        &bounds,
        ["method", "route"],
        routes.iter().map(|route| {
            let labels = [route.method.as_str(), route.pattern.as_str()];
            let sum = route.durations.sum_us as f64 / 1e6;
            (labels, &route.durations.buckets[..], sum)
        }),
    );
}

/// A clustered node's Raft figures, from its own status: a leader adds each other member's
/// lag and silence.
fn raft_metrics(metrics: &mut Metrics, status: &ClusterStatus) {
    let gauges = [
        (
            "lithair_raft_term",
            "Raft term this node is in.",
            status.term as f64,
        ),
        (
            "lithair_raft_leader",
            "Id of the leader this node knows (0: none).",
            status.leader as f64,
        ),
        (
            "lithair_raft_is_leader",
            "1 while this node leads.",
            f64::from(u8::from(status.role == "leader")),
        ),
        (
            "lithair_raft_commit_index",
            "Highest log index known committed.",
            status.commit as f64,
        ),
        (
            "lithair_raft_applied_index",
            "Raft index of the last entry handed to the engine.",
            status.applied as f64,
        ),
        (
            "lithair_raft_last_index",
            "Last log index.",
            status.last_index as f64,
        ),
        (
            "lithair_raft_snapshot_index",
            "Index the log is compacted to (0: none).",
            status.snapshot_index as f64,
        ),
    ];
    metrics.singles(Kind::Gauge, gauges);
    let counters = [
        (
            "lithair_raft_snapshots_installed_total",
            "Snapshots installed from a leader since the process started.",
            status.snapshots_installed as f64,
        ),
        (
            "lithair_raft_read_batches_total",
            "ReadIndex batches this node started since the process started.",
            status.read_batches as f64,
        ),
    ];
    metrics.singles(Kind::Counter, counters);
    // Only a leader knows these; a family with no sample is left out.
    let others = || status.members.iter().filter(|m| m.id != status.id);
    let lags: Vec<(String, f64)> = others()
        .filter_map(|m| Some((m.id.to_string(), m.lag? as f64)))
        .collect();
    if !lags.is_empty() {
        metrics.labeled(
            "lithair_raft_member_lag",
            Kind::Gauge,
            "Log entries each other member lags behind this leader.",
            "member",
            lags,
        );
    }
    let silences: Vec<(String, f64)> = others()
        .filter_map(|m| Some((m.id.to_string(), m.last_heard_ms? as f64 / 1000.0)))
        .collect();
    if !silences.is_empty() {
        metrics.labeled(
            "lithair_raft_member_last_heard_seconds",
            Kind::Gauge,
            "Time since this leader last heard from each other member.",
            "member",
            silences,
        );
    }
}

/// What the metrics route reads besides the app's engine and state.
#[derive(Default)]
pub(crate) struct Sources {
    /// The counters the server counts its answers in, when known.
    pub(crate) http: Option<ServerStats>,
    /// The counters the app's router counts each route's answers in, when it does.
    pub(crate) routes: Option<RouteStats>,
    /// The Raft node of a clustered app.
    pub(crate) node: Option<Arc<Node>>,
    /// The app's gzip layer, when it has one (its cache of variants).
    pub(crate) gzip: Option<Compression>,
}

/// The gzip layer's work: bodies deflated, variants sent from its cache, what the cache holds.
fn gzip_metrics(metrics: &mut Metrics, gzip: &GzipCacheStats) {
    metrics.singles(
        Kind::Counter,
        [
            (
                "lithair_http_gzip_deflated_total",
                "Bodies the gzip layer deflated.",
                gzip.made as f64,
            ),
            (
                "lithair_http_gzip_cache_hits_total",
                "Answers the gzip layer sent a kept variant for, deflating nothing.",
                gzip.hits as f64,
            ),
            (
                "lithair_http_gzip_sent_plain_while_making_total",
                "Answers the gzip layer sent uncompressed because another request was deflating the same body.",
                gzip.sent_plain_while_making as f64,
            ),
        ],
    );
    metrics.singles(
        Kind::Gauge,
        [
            (
                "lithair_http_gzip_cache_entries",
                "Variants the gzip layer keeps.",
                gzip.entries as f64,
            ),
            (
                "lithair_http_gzip_cache_bytes",
                "Bytes the gzip layer's kept variants take, counted against its budget.",
                gzip.bytes as f64,
            ),
        ],
    );
}

/// Adds `GET /_lithair/metrics` (HEAD from it, as every GET route), run on a worker: it
/// reads a file of `/proc`.
pub(crate) fn add_route(router: Router, handle: &Handle, sources: Sources) -> Router {
    let handle = handle.clone();
    let serving_since = Instant::now();
    router.get(METRICS_PATH, move |_: &mut Request| {
        let mut metrics = app_metrics(&handle, sources.http.as_ref(), serving_since);
        if let Some(routes) = &sources.routes {
            route_metrics(&mut metrics, routes);
        }
        if let Some(node) = &sources.node {
            raft_metrics(&mut metrics, &node.status());
        }
        if let Some(gzip) = &sources.gzip {
            gzip_metrics(&mut metrics, &gzip.cache_stats());
        }
        metrics.into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_has_help_and_type_before_its_samples_and_escapes_label_values() {
        let mut metrics = Metrics::new();
        metrics.single("a_total", Kind::Counter, "As.", 3u32);
        metrics.labeled(
            "b",
            Kind::Gauge,
            "Bs.",
            "model",
            [("x\"y\\z\nw".to_string(), 1.5), ("Post".to_string(), 0.0)],
        );
        assert_eq!(
            metrics.finish(),
            "# HELP a_total As.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs.\n# TYPE b gauge\nb{model=\"x\\\"y\\\\z\\nw\"} 1.5\nb{model=\"Post\"} 0\n"
        );
    }

    #[test]
    fn a_histogram_is_written_cumulatively_with_sum_and_count() {
        let mut metrics = Metrics::new();
        metrics.histogram("t_seconds", "Ts.", &[0.0001, 0.5], &[2, 0, 3], 7.25);
        assert_eq!(
            metrics.finish(),
            "# HELP t_seconds Ts.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{le=\"0.0001\"} 2\nt_seconds_bucket{le=\"0.5\"} 2\n\
             t_seconds_bucket{le=\"+Inf\"} 5\nt_seconds_sum 7.25\nt_seconds_count 5\n"
        );
    }

    #[test]
    fn labeled_histograms_share_one_header_and_carry_their_label_on_every_sample() {
        let mut metrics = Metrics::new();
        let series = [("read", &[1u64, 0][..], 0.5), ("wr\"ite", &[0, 2][..], 4.0)];
        metrics.histograms("t_seconds", "Ts.", &[1.0], "kind", series);
        assert_eq!(
            metrics.finish(),
            "# HELP t_seconds Ts.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{kind=\"read\",le=\"1\"} 1\n\
             t_seconds_bucket{kind=\"read\",le=\"+Inf\"} 1\n\
             t_seconds_sum{kind=\"read\"} 0.5\nt_seconds_count{kind=\"read\"} 1\n\
             t_seconds_bucket{kind=\"wr\\\"ite\",le=\"1\"} 0\n\
             t_seconds_bucket{kind=\"wr\\\"ite\",le=\"+Inf\"} 2\n\
             t_seconds_sum{kind=\"wr\\\"ite\"} 4\nt_seconds_count{kind=\"wr\\\"ite\"} 2\n"
        );
    }

    #[test]
    #[should_panic(expected = "one bucket above the last bound")]
    fn a_histogram_without_its_overflow_bucket_is_refused() {
        Metrics::new().histogram("t", "Ts.", &[1.0], &[1], 1.0);
    }

    #[test]
    fn samples_with_several_labels_carry_them_in_order_escaped() {
        let mut metrics = Metrics::new();
        metrics.labeled_by(
            "r_total",
            Kind::Counter,
            "Rs.",
            ["method", "route"],
            [(["GET", "/items/{id}"], 2.0), (["POST", "/a\"b"], 1.0)],
        );
        metrics.histograms_by(
            "h_seconds",
            "Hs.",
            &[1.0],
            ["method", "route"],
            [(["GET", "/x"], &[1u64, 1][..], 2.5)],
        );
        assert_eq!(
            metrics.finish(),
            "# HELP r_total Rs.\n# TYPE r_total counter\n\
             r_total{method=\"GET\",route=\"/items/{id}\"} 2\n\
             r_total{method=\"POST\",route=\"/a\\\"b\"} 1\n\
             # HELP h_seconds Hs.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{method=\"GET\",route=\"/x\",le=\"1\"} 1\n\
             h_seconds_bucket{method=\"GET\",route=\"/x\",le=\"+Inf\"} 2\n\
             h_seconds_sum{method=\"GET\",route=\"/x\"} 2.5\n\
             h_seconds_count{method=\"GET\",route=\"/x\"} 2\n"
        );
    }

    /// docs/METRICS.md lists every metric this file writes (each name in backquotes, with
    /// its labels when it has some), so the page cannot fall behind the code.
    #[test]
    fn every_metric_written_here_is_documented() {
        let source = include_str!("metrics.rs");
        let page = include_str!("../../docs/METRICS.md");
        // Each string literal that starts a metric name: `"lithair_` up to its closing quote.
        let names: std::collections::BTreeSet<&str> = source
            .match_indices("\"lithair_")
            .filter_map(|(at, _)| source[at + 1..].split('"').next())
            .filter(|name| name.len() > "lithair_".len() && is_metric_name(name))
            .collect();
        assert!(names.len() >= 20, "found {names:?}");
        for name in names {
            let listed =
                page.contains(&format!("`{name}`")) || page.contains(&format!("`{name}{{"));
            assert!(listed, "{name} is not in docs/METRICS.md");
        }
    }

    #[test]
    fn names_follow_the_format() {
        for good in ["a", "lithair_log_fsyncs_total", "_x:y", "A9"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(1.5e-9), "1.5e-9");
    }
}
