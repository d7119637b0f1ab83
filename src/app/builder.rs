//! `App`: the builder a Lithair user starts from, and `run`, which reads the command line and
//! serves, replays or inspects.
//!
//! Owns: wiring models, custom routes and commands onto one engine and one HTTP server; exit
//! codes; the start-up line.
//! Must not: contain write logic (that is `app::command`) or HTTP semantics of models (that is
//! `app::routes`).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::cli::{self, AccessLogTo, Command, ExtraFlag, ServeOptions};
use super::command::{Checks, Tx};
use super::handle::{Executed, Handle};
use super::metrics::Sources as MetricsSources;
use super::model::{Model, ModelEvent, Rejection};
use super::routes::{model_routes, write_error_problem, write_meta};
use super::state::{register, AppState};
use crate::engine::{Engine, EngineOptions};
use crate::http::cors::Cors;
use crate::http::limits::WORKER_THREADS_DEFAULT;
use crate::http::middleware::{AccessLog, Compression, SecurityHeaders};
use crate::http::problem::Problem;
use crate::http::route_stats::RouteStats;
use crate::http::router::Router;
use crate::http::stats::ServerStats;
use crate::http::{Method, Request, Response, Server, ServerConfig, ServerHandle};
use crate::json::{FromJson, ToJson};

type RouteFn = Box<dyn Fn(Router, &Handle) -> Router + Send + Sync>;
type StartFn = Box<dyn Fn(&Handle, &ServeOptions) -> Result<(), String> + Send + Sync>;
type OptionsCheckFn = Box<dyn Fn(&ServeOptions) -> Result<(), cli::CliError> + Send + Sync>;
type HookFn = Box<dyn Fn(&Handle) + Send + Sync>;
type CommandHandler = Box<dyn Fn(&mut Request) -> Result<Response, Problem> + Send + Sync>;
type InstallFn = Box<dyn Fn(&Handle) -> CommandHandler + Send + Sync>;

/// Describes one model for `/openapi.json`.
#[derive(Clone, Copy)]
pub(crate) struct ModelInfo {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) schema: fn() -> String,
    /// JSON type of the primary key (`integer` or `string`), for the `{id}` path parameter.
    pub(crate) id_type: &'static str,
    /// Whether the write routes are served (not for `App::model_read_only`).
    pub(crate) writable: bool,
    /// Adds `GET {base}/live` (live query over WebSocket) fed by the app's pump.
    pub(crate) live_ws: LiveWsRoutes,
}

type LiveWsRoutes = fn(Router, &Handle, &Arc<super::live_ws::LivePump>) -> Router;

/// A custom command route, for `/openapi.json`.
#[derive(Clone)]
pub(crate) struct CommandInfo {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) summary: String,
    /// Status of a successful answer.
    pub(crate) status: u16,
}

/// A Lithair application: models, commands and routes served from one binary.
///
/// ```no_run
/// # use lithair::app::App;
/// fn main() -> std::process::ExitCode {
///     App::new("blog").run()
/// }
/// ```
pub struct App {
    name: String,
    models: Vec<ModelInfo>,
    routes: Vec<RouteFn>,
    commands: Vec<CommandInfo>,
    on_start: Vec<StartFn>,
    extra_flags: Vec<ExtraFlag>,
    /// Checks of `serve`'s options, run before anything opens (see [`App::check_options`]).
    option_checks: Vec<OptionsCheckFn>,
    engine_options: EngineOptions,
    server_config: ServerConfig,
    /// The router's first global layer; `None` sends no security headers.
    security_headers: Option<SecurityHeaders>,
    /// The router's global CORS layer, after the security headers; `None`: no CORS headers.
    cors: Option<Cors>,
    /// The router's global gzip layer, after CORS; `None`: answers go out as they are.
    compression: Option<Compression>,
    static_dirs: Vec<(String, String)>,
    checks: Checks,
    hooks: Vec<HookFn>,
    /// Keyed write outcomes remembered in memory (see `Handle::with_outcome_window`).
    outcome_window: usize,
}

/// An app's background snapshot period in events
/// ([`EngineOptions::snapshot_every_events`]): the first snapshot, and the shortest gap
/// between two while the state is small.
pub const SNAPSHOT_EVERY_EVENTS_DEFAULT: u64 = 100_000;

/// An app's snapshot tail rule ([`EngineOptions::snapshot_tail_percent`]): a snapshot waits
/// until the log since the last one is at least as large as that snapshot (100 %, the default
/// of Redis's `auto-aof-rewrite-percentage`, the same trade-off).
///
/// With a snapshot of S bytes and a log tail of T bytes: a restart loads S and replays T;
/// the disk holds S (plus the previous snapshot, kept) and T; each snapshot costs O(S). At
/// 100 % a snapshot comes after at most one period or S bytes of log, so T stays below
/// `max(period, S)`: a restart reads at most about twice the snapshot's size and the disk
/// holds at most about three snapshots' worth, while the snapshot work is at most about
/// one encoded-and-written byte of snapshot per byte of log, whatever the state size (with
/// the period alone, a 1 GB state rewrote 1 GB every 100,000 events, and past a few million
/// records the snapshot thread never rested). A lower percent shortens restarts and spends
/// more CPU and disk writes on snapshots; a higher one the reverse.
pub const SNAPSHOT_TAIL_PERCENT_DEFAULT: u32 = 100;

impl App {
    /// A new app named `name` (its default data directory is `data/<name>`).
    pub fn new(name: &str) -> App {
        App {
            name: name.to_string(),
            models: Vec::new(),
            routes: Vec::new(),
            commands: Vec::new(),
            on_start: Vec::new(),
            extra_flags: Vec::new(),
            option_checks: Vec::new(),
            engine_options: EngineOptions {
                snapshot_every_events: SNAPSHOT_EVERY_EVENTS_DEFAULT,
                snapshot_tail_percent: SNAPSHOT_TAIL_PERCENT_DEFAULT,
                ..EngineOptions::default()
            },
            server_config: ServerConfig::default(),
            security_headers: Some(SecurityHeaders::default()),
            cors: None,
            compression: None,
            static_dirs: Vec::new(),
            checks: Checks::new(),
            outcome_window: super::handle::RECENT_OUTCOMES_MAX,
            hooks: Vec::new(),
        }
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds model `M`: its collection and its routes under `M::PATH`.
    pub fn model<M: Model>(self) -> App {
        self.add_model::<M>(true)
    }

    /// Adds model `M` with read routes only: its records change through commands alone (the
    /// shop's orders are placed by a command that also reserves stock).
    pub fn model_read_only<M: Model>(self) -> App {
        self.add_model::<M>(false)
    }

    fn add_model<M: Model>(mut self, writable: bool) -> App {
        register::<M>();
        assert!(
            !self.models.iter().any(|m| m.name == M::NAME),
            "model `{}` added twice",
            M::NAME
        );
        self.models.push(ModelInfo {
            name: M::NAME,
            path: M::PATH,
            schema: super::routes::schema_json::<M>,
            id_type: super::routes::kind_name(M::FIELDS[M::PRIMARY_KEY].kind),
            writable,
            live_ws: super::live_ws::live_ws_routes::<M>,
        });
        self.routes.push(Box::new(move |router, handle| {
            let router = model_routes::<M>(router, handle, writable);
            super::live::live_routes::<M>(router, handle)
        }));
        self
    }

    /// Adds custom routes; `build` gets the router and a handle on the engine.
    pub fn routes(
        mut self,
        build: impl Fn(Router, &Handle) -> Router + Send + Sync + 'static,
    ) -> App {
        self.routes.push(Box::new(build));
        self
    }

    /// Exposes a domain command as `POST path` (`path` may hold `{param}`s). The JSON body is
    /// decoded into `I` (an empty body reads as `null`, so `I = ()` or `Option<_>` takes none);
    /// `decide` runs in the sequencer against the current state (seeing every accepted write)
    /// and stages events through the `Tx`: all of them commit atomically, in one batch, or none
    /// does. Answers `status` with the output as JSON, or the rejection as a problem.
    /// `#[command]` (in the prelude) declares the same thing on the function itself.
    ///
    /// # Panics
    /// If `status` is not a 2xx that allows a body (204 and 205 do not).
    pub fn command<I, O>(
        self,
        path: &str,
        status: u16,
        summary: &str,
        decide: impl Fn(&mut Tx<'_>, &I, &Params) -> Result<O, Rejection> + Send + Sync + 'static,
    ) -> App
    where
        I: FromJson + Send + Sync + 'static,
        O: ToJson + Send + 'static,
    {
        self.route_command(CommandRoute::new(
            Method::Post,
            path,
            status,
            summary,
            decide,
        ))
    }

    /// Registers a command route, typically made by a `#[command]` function's companion
    /// (`place_route()` for `fn place`).
    pub fn route_command(mut self, route: CommandRoute) -> App {
        self.commands.push(CommandInfo {
            method: route.method.clone(),
            path: route.path.clone(),
            summary: route.summary,
            status: route.status,
        });
        let CommandRoute {
            method,
            path,
            install,
            ..
        } = route;
        self.routes.push(Box::new(move |router, handle| {
            let command = install(handle);
            // Decoding the input and submitting never block: small requests run on the reactor.
            let handler: Arc<dyn crate::http::Handler> = Arc::new(CommandHandlerRoute(command));
            router.route(method.clone(), &path, handler)
        }));
        self
    }

    /// Registers several command routes: `.commands([place_route(), cancel_route()])`.
    pub fn commands(self, routes: impl IntoIterator<Item = CommandRoute>) -> App {
        routes.into_iter().fold(self, App::route_command)
    }

    /// Adds a domain rule for records of `M`, enforced on every create, replace and update
    /// whichever path the write takes (generated route, command, programmatic call).
    /// Example: a comment must reference an existing post.
    pub fn check<M: Model>(
        mut self,
        rule: impl Fn(&Tx<'_>, &M) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> App {
        self.checks.add::<M>(rule);
        self
    }

    /// Runs `hook` after every committed change of `M`, whichever path wrote it (generated
    /// route, command, programmatic call; in a cluster, replicated entries too). It gets the
    /// event and its log index; it runs after the commit, never inside `apply`, and must not
    /// wait on another write.
    pub fn on_change<M: Model>(
        mut self,
        hook: impl Fn(&ModelEvent<M>, u64) + Send + Sync + 'static,
    ) -> App {
        let hook = Arc::new(hook);
        self.hooks.push(Box::new(move |handle| {
            let hook = Arc::clone(&hook);
            handle.engine().on_commit(move |committed| {
                if let Some(Ok(event)) = committed.event.decode::<M>() {
                    hook(&event, committed.envelope.index);
                }
            });
        }));
        self
    }

    /// Serves the files under `root` at `prefix`.
    pub fn static_dir(mut self, prefix: &str, root: &str) -> App {
        self.static_dirs
            .push((prefix.to_string(), root.to_string()));
        self
    }

    /// Adds a flag to `serve` (read it in an `on_start` hook with `ServeOptions::extra`). Like
    /// the built-in flags, it may also come from `LITHAIR_<NAME>` or `name = value` in
    /// `lithair.toml`; a switch (`value_name` `None`) is then `true` or `false`.
    pub fn flag(
        mut self,
        name: &'static str,
        value_name: Option<&'static str>,
        help: &'static str,
    ) -> App {
        self.extra_flags.push(ExtraFlag {
            name,
            value_name,
            help,
        });
        self
    }

    /// Checks `serve`'s options (an application flag's value, say) as part of the command
    /// line: a refusal is a usage error (exit 2, `(try --help)`), given before the data
    /// directory is created or opened, as the built-in flags' are.
    pub fn check_options(
        mut self,
        check: impl Fn(&ServeOptions) -> Result<(), cli::CliError> + Send + Sync + 'static,
    ) -> App {
        self.option_checks.push(Box::new(check));
        self
    }

    /// Runs `hook` after recovery and before serving (e.g. to seed data).
    pub fn on_start(
        mut self,
        hook: impl Fn(&Handle, &ServeOptions) -> Result<(), String> + Send + Sync + 'static,
    ) -> App {
        self.on_start.push(Box::new(hook));
        self
    }

    /// Replaces the engine settings (durability, snapshots, ...).
    pub fn engine_options(mut self, options: EngineOptions) -> App {
        self.engine_options = options;
        self
    }

    /// How many keyed writes' outcomes are remembered in memory (default
    /// `handle::RECENT_OUTCOMES_MAX`); a retry of an older one reads the log back.
    ///
    /// # Panics
    /// If `outcomes` is 0.
    pub fn outcome_window(mut self, outcomes: usize) -> App {
        assert!(
            outcomes > 0,
            "the outcome window holds at least one outcome"
        );
        self.outcome_window = outcomes;
        self
    }

    /// Replaces the HTTP server settings (limits, threads).
    pub fn server_config(mut self, config: ServerConfig) -> App {
        self.server_config = config;
        self
    }

    /// Replaces the security headers put on every response (on by default, see
    /// [`SecurityHeaders`]); `None` sends none.
    ///
    /// Turn them off only where something else sets them (a proxy in front) or where the
    /// exact response bytes are the point: the bench server answers with the headers of the
    /// reference servers it is compared with.
    pub fn security_headers(mut self, headers: Option<SecurityHeaders>) -> App {
        self.security_headers = headers;
        self
    }

    /// Lets pages on other origins call the app from a browser: `cors` answers preflights
    /// and marks the answers of every route (the generated model and command routes, custom
    /// ones, static files) for the origins it lists, and no others. Off by default (a browser
    /// then lets only same-origin pages read the answers).
    ///
    /// ```
    /// # use lithair::app::App;
    /// use lithair::http::cors::Cors;
    /// let app = App::new("shop").cors(Cors::new(["https://shop.example.com"]));
    /// ```
    pub fn cors(mut self, cors: Cors) -> App {
        self.cors = Some(cors);
        self
    }

    /// Compresses answers with gzip for clients that accept it: those of a compressible type
    /// (JSON, text, HTML, ...) of at least the layer's threshold (1 KiB by default), from
    /// every route, writes answered once durable included (a worker compresses those, not
    /// the engine's thread). Off by default: deflate costs CPU that a proxy in front or a
    /// fast network may not be worth.
    ///
    /// ```
    /// # use lithair::app::App;
    /// use lithair::http::middleware::Compression;
    /// let app = App::new("shop").compression(Compression::default());
    /// ```
    pub fn compression(mut self, compression: Compression) -> App {
        self.compression = Some(compression);
        self
    }

    /// Reads the process arguments and runs the chosen subcommand; returns the exit code:
    /// 0 on success (and for `--help`), [`cli::USAGE_ERROR_EXIT_CODE`] (2) for a command line
    /// that was refused before anything ran, 1 for a command that failed.
    pub fn run(self) -> std::process::ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        self.run_from(&args)
    }

    /// [`App::run`] on `args` (without the program name) instead of the process arguments:
    /// runs the subcommand, reports a failure on stderr, and returns the exit code.
    pub fn run_from(&self, args: &[String]) -> std::process::ExitCode {
        let outcome = self
            .parse_args(args)
            .map_err(|refused| (cli::USAGE_ERROR_EXIT_CODE, refused.to_string()))
            .and_then(|command| self.execute(command).map_err(|message| (1, message)));
        match outcome {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err((code, message)) => {
                eprintln!("{}: {message}", self.name);
                std::process::ExitCode::from(code)
            }
        }
    }

    /// Runs the subcommand named by `args` (without the program name).
    pub fn run_with(&self, args: &[String]) -> Result<(), String> {
        let command = self.parse_args(args).map_err(|e| e.to_string())?;
        self.execute(command)
    }

    /// Parses `args` with the environment and `lithair.toml` of the working directory.
    fn parse_args(&self, args: &[String]) -> Result<Command, cli::CliError> {
        let config_file = std::fs::read_to_string("lithair.toml").ok();
        let env = |name: &str| std::env::var(name).ok();
        let sources = cli::Sources {
            app_name: &self.name,
            extra_flags: &self.extra_flags,
            env: &env,
            config_file: config_file.as_deref(),
        };
        let command = cli::parse(args, &sources)?;
        if let Command::Serve(options) = &command {
            for check in &self.option_checks {
                check(options)?;
            }
        }
        Ok(command)
    }

    /// Runs a parsed command.
    fn execute(&self, command: Command) -> Result<(), String> {
        match command {
            Command::Help(text) => {
                print!("{text}");
                Ok(())
            }
            Command::Serve(options) => self.serve(&options),
            Command::Replay { data } => {
                super::tools::require_data_dir(&data)?;
                self.replay(&data)
            }
            Command::Snapshot { data } => {
                super::tools::require_data_dir(&data)?;
                let (engine, _) = self.open_engine(&data)?;
                let info = engine.snapshot().map_err(|e| e.to_string())?;
                // A line for a person (it printed the struct's Debug form).
                println!(
                    "snapshot: index {} in {} ({} log segments deleted)",
                    info.index,
                    info.path.display(),
                    info.segments_deleted
                );
                Ok(())
            }
            Command::Log { data, action } => {
                // Buffered: `log inspect` prints a line per event.
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                super::tools::log_command(&data, &action, &mut out)?;
                std::io::Write::flush(&mut out).map_err(|e| e.to_string())
            }
            Command::Cluster {
                node,
                action,
                secret,
            } => super::tools::cluster_command(node, &action, secret.as_deref()),
        }
    }

    fn state(&self) -> AppState {
        let names: Vec<&'static str> = self.models.iter().map(|m| m.name).collect();
        AppState::with_models(&names)
    }

    fn open_engine(&self, data: &Path) -> Result<(Engine<AppState>, u64), String> {
        std::fs::create_dir_all(data)
            .map_err(|e| format!("cannot create data directory {}: {e}", data.display()))?;
        let mut options = self.engine_options.clone();
        // A long replay shows progress, on a terminal only (logs stay one line per start).
        let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        if on_terminal && options.replay_progress.is_none() {
            let name = self.name.clone();
            options.replay_progress = Some(Arc::new(move |index| {
                eprint!("\r{name}: replaying the log... index {index}");
            }));
        }
        let (engine, opened) = Engine::open(data, options, self.state())
            .map_err(|e| format!("cannot open {}: {e}", data.display()))?;
        let replayed = opened.applied_index - opened.snapshot_index;
        if on_terminal && replayed >= crate::engine::REPLAY_PROGRESS_EVENTS {
            eprintln!();
        }
        Ok((engine, replayed))
    }

    fn replay(&self, data: &Path) -> Result<(), String> {
        let started = Instant::now();
        let (engine, replayed) = self.open_engine(data)?;
        let elapsed = started.elapsed().as_secs_f64();
        let rate = replayed as f64 / elapsed.max(1e-9);
        println!(
            "replay: {replayed} events in {elapsed:.3} s ({rate:.0} events/s), applied index {}, digest {}",
            engine.applied_index(),
            crate::engine::digest_hex(&engine.digest())
        );
        for (model, count) in engine.read(|state| state.summary()) {
            println!("  {model}: {count} records");
        }
        Ok(())
    }

    /// Opens the engine, builds the router and starts serving in the background.
    /// With `--cluster`, the node joins its Raft group: followers forward writes to the leader.
    pub fn start(&self, options: &ServeOptions) -> Result<Running, String> {
        let started = Instant::now();
        let clustered = !options.cluster.is_empty()
            || options.join.is_some()
            || super::cluster::has_membership(&options.data);
        if !clustered && (options.node_id.is_some() || options.peer_port.is_some()) {
            // Without this the node would start alone and write a single node's log, which a
            // cluster node later refuses: a forgotten `--cluster` or a mistyped `--data` of a
            // node that joined before must not go unnoticed.
            return Err(format!(
                "`--node-id` and `--peer-port` are a cluster node's, but {} holds no \
                 membership: give `--cluster MAP` or `--join IP:PORT` (a node that joined \
                 before restarts from its data directory's {})",
                options.data.display(),
                crate::raft::node::PEER_BOOK_FILE_NAME
            ));
        }
        // Before the data directory is touched: a log that cannot be opened changes nothing.
        let access_log = match &options.access_log {
            None => None,
            Some(AccessLogTo::Stderr) => Some(AccessLog::stderr()),
            Some(AccessLogTo::File(path)) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the access log {}: {e}", path.display()))?;
                Some(AccessLog::writer(file))
            }
        };
        let (engine, replayed, cluster) = if !clustered {
            let (engine, replayed) = self.open_engine(&options.data)?;
            (engine, replayed, None)
        } else {
            let clustered =
                super::cluster::start_cluster(options, self.engine_options.clone(), self.state())?;
            let parts = (clustered.node, clustered.replica);
            (clustered.engine, clustered.replayed, Some(parts))
        };
        // The replay alone: the start hooks (a preload) and binding come after.
        let opened_in = started.elapsed();
        let handle = Handle::with_outcome_window(
            Arc::new(engine),
            Arc::new(self.checks.clone()),
            self.outcome_window,
        );
        for install in &self.hooks {
            install(&handle);
        }
        for hook in &self.on_start {
            hook(&handle, options)?;
        }
        let http_stats = ServerStats::new();
        let sources = MetricsSources {
            http: Some(http_stats.clone()),
            routes: Some(RouteStats::new()),
            node: cluster.as_ref().map(|(node, _)| Arc::clone(node)),
            // The gzip layer's figures: added by `router_with`, which adds the layer.
            ..MetricsSources::default()
        };
        let router = self.router_with(&handle, sources, access_log);
        let addr = std::net::SocketAddr::new(options.bind, options.port);
        let mut server_config = self.server_config.clone();
        if let Some(us) = options.poll_window_us {
            server_config.poll_window_max_us = us;
        }
        if cluster.is_some() && server_config.worker_threads == WORKER_THREADS_DEFAULT {
            // A clustered commit waits for a network round trip and two fsyncs: more writers
            // must wait at once to fill each replicated batch (see DESIGN §9).
            server_config.worker_threads = super::cluster::CLUSTER_WORKER_THREADS;
        }
        let server = Server::bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?
            .config(server_config)
            .stats(http_stats);
        let local = server.local_addr().map_err(|e| e.to_string())?;
        let (server, node) = match cluster {
            None => (server.spawn(router), None),
            Some((node, replica)) => {
                let front = super::cluster::ClusterFront::new(router, Arc::clone(&node), replica);
                (server.spawn(front), Some(node))
            }
        };
        let server = server.map_err(|e| e.to_string())?;
        println!(
            "{}: serving http://{local} (data: {}, {replayed} events replayed in {:.2} s, ready in {:.2} s)",
            self.name,
            options.data.display(),
            opened_in.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        Ok(Running {
            handle,
            server,
            node,
        })
    }

    fn serve(&self, options: &ServeOptions) -> Result<(), String> {
        let running = self.start(options)?;
        wait_for_termination().map_err(|e| format!("cannot wait for signals: {e}"))?;
        eprintln!("{}: shutting down", self.name);
        running.stop()
    }

    /// The full router of the app.
    pub fn router(&self, handle: &Handle) -> Router {
        self.router_with(handle, MetricsSources::default(), None)
    }

    /// The full router, whose metrics also read `sources` (the counters of the server it is
    /// served by, the Raft node of a clustered app), logging each answer to `access_log`.
    fn router_with(
        &self,
        handle: &Handle,
        sources: MetricsSources,
        access_log: Option<AccessLog>,
    ) -> Router {
        let mut router = Router::bare();
        if let Some(log) = access_log {
            // Outermost: it times and logs every answer, the router's own 404s included.
            router = router.layer(log);
        }
        if let Some(headers) = &self.security_headers {
            router = router.layer(headers.clone());
        }
        if let Some(cors) = &self.cors {
            router = router.layer(cors.clone());
        }
        if let Some(compression) = &self.compression {
            router = router.layer(compression.clone());
        }
        for build in &self.routes {
            router = build(router, handle);
        }
        let pump = super::live_ws::LivePump::start(handle);
        for model in &self.models {
            router = (model.live_ws)(router, handle, &pump);
        }
        for (prefix, root) in &self.static_dirs {
            router = router.static_dir(prefix, root);
        }
        if let Some(stats) = &sources.routes {
            router = router.count_routes(stats.clone());
        }
        let sources = MetricsSources {
            gzip: self.compression.clone(),
            ..sources
        };
        let router = super::metrics::add_route(router, handle, sources);
        super::docs::add_routes(router, &self.name, &self.models, &self.commands)
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_termination() -> std::io::Result<()> {
    let signals = crate::sys::waker::Waker::new()?;
    crate::sys::signal::notify_on_termination(signals.write_fd())?;
    let mut poller = crate::sys::Poller::new()?;
    poller.add(signals.fd(), 0, crate::sys::Interest::READ)?;
    let mut events = Vec::new();
    loop {
        events.clear();
        poller.wait(&mut events, -1)?;
        if !events.is_empty() {
            crate::sys::signal::clear_termination_fd();
            return Ok(());
        }
    }
}

/// The path parameters of a command route (`{id}` in `/api/posts/{id}/publish`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The raw value of parameter `name`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Parameter `name` parsed as `T`; a missing or malformed one names nothing (404).
    pub fn get<T: std::str::FromStr>(&self, name: &str) -> Result<T, Rejection> {
        let raw = self.raw(name).unwrap_or_default();
        raw.parse().map_err(|_| Rejection::Domain {
            status: 404,
            message: format!("no resource at `{raw}`"),
        })
    }

    /// Parameter `name` as a record id of `M` (integer or string, per its primary key).
    pub fn id<M: Model>(&self, name: &str) -> Result<super::model::Id, Rejection> {
        use super::schema::FieldKind;
        match M::FIELDS[M::PRIMARY_KEY].kind {
            FieldKind::Int | FieldKind::UInt => self.get::<u64>(name).map(super::model::Id::Int),
            _ => Ok(super::model::Id::Str(
                self.raw(name).unwrap_or_default().to_string(),
            )),
        }
    }
}

/// A domain command as a route: method, path, success status, OpenAPI summary and the decide
/// function. `#[command(POST "/api/orders", status = 201)]` on `fn place` generates
/// `place_route()` returning one; `App::route_command` and `App::commands` register it.
pub struct CommandRoute {
    method: Method,
    path: String,
    status: u16,
    summary: String,
    /// Builds the HTTP handler once the engine handle exists.
    install: InstallFn,
}

impl CommandRoute {
    /// A command answering `method path` (see `App::command` for what `decide` sees).
    ///
    /// # Panics
    /// If `status` is not a success status that may carry the output (2xx but 204 and 205),
    /// the rule `#[command(.., status = N)]` checks at compile time.
    pub fn new<I, O>(
        method: Method,
        path: &str,
        status: u16,
        summary: &str,
        decide: impl Fn(&mut Tx<'_>, &I, &Params) -> Result<O, Rejection> + Send + Sync + 'static,
    ) -> CommandRoute
    where
        I: FromJson + Send + Sync + 'static,
        O: ToJson + Send + 'static,
    {
        assert!(
            COMMAND_STATUSES.contains(&status) && status != 204 && status != 205,
            "command {path}: status {status} is not a 2xx that allows a body (not 204 or 205)"
        );
        let decide = Arc::new(decide);
        let install: InstallFn = Box::new(move |handle: &Handle| -> CommandHandler {
            let handle = handle.clone();
            let decide = Arc::clone(&decide);
            let answers = Arc::new(Mutex::new(CommandAnswers::default()));
            Box::new(move |req: &mut Request| -> Result<Response, Problem> {
                let input: I = if req.body.iter().all(u8::is_ascii_whitespace) {
                    crate::json::from_str("null")
                        .map_err(|_| Problem::bad_request("this command needs a JSON body"))?
                } else {
                    req.json()?
                };
                let input = Arc::new(input);
                let params = Arc::new(Params(req.params.clone()));
                let decide = Arc::clone(&decide);
                // The key with the request's fingerprint, as the generated routes send it: the
                // key reused with another body is refused (422), not replayed.
                let meta = write_meta(req)?;
                let keyed = meta.idempotency_key.is_some();
                let answers = Arc::clone(&answers);
                // Deferred: the engine's applier renders the answer once the command is
                // durable, so no thread waits for the commit.
                let (placeholder, responder) = Response::deferred();
                let decide = move |tx: &mut Tx<'_>| decide(tx, &input, &params);
                handle.execute_then(meta, decide, move |outcome| {
                    responder.complete(match outcome {
                        Ok(Executed {
                            output: Some(output),
                            receipt,
                        }) => match crate::json::to_string(&output) {
                            Ok(text) => {
                                let body = text.into_bytes();
                                // Only a keyed answer is copied aside, for its retries,
                                // and only one with events: an eventless command holds no
                                // log index (its `first_index` is the next command's, whose
                                // retry would be given this answer), and the engine does
                                // not remember its key either.
                                if keyed && receipt.has_events() {
                                    answers
                                        .lock()
                                        .expect("command answers poisoned")
                                        .remember(receipt.first_index, Arc::from(&body[..]));
                                }
                                Response::bytes(status, "application/json", body)
                            }
                            Err(_) => Response::json(status, &output),
                        },
                        // A retry: the first answer again, when it is still remembered.
                        Ok(Executed {
                            output: None,
                            receipt,
                        }) => {
                            let remembered = answers
                                .lock()
                                .expect("command answers poisoned")
                                .get(receipt.first_index);
                            match remembered {
                                Some(body) => {
                                    Response::bytes(status, "application/json", body.to_vec())
                                }
                                None => Response::new(status),
                            }
                            .with_header("Idempotent-Replayed", "true")
                        }
                        Err(error) => write_error_problem(&error).into(),
                    });
                });
                Ok(placeholder)
            })
        });
        CommandRoute {
            method,
            path: path.to_string(),
            status,
            summary: summary.to_string(),
            install,
        }
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path pattern (`/api/orders/{id}/cancel`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The status of a successful answer.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The OpenAPI summary.
    pub fn summary(&self) -> &str {
        &self.summary
    }
}

/// A command route as a handler: answered through a deferred response, so it runs inline on
/// the reactor when its body is small (see `routes::INLINE_BODY_BYTES_MAX`).
struct CommandHandlerRoute(CommandHandler);

impl crate::http::Handler for CommandHandlerRoute {
    fn call(&self, req: &mut Request) -> Response {
        (self.0)(req).unwrap_or_else(Response::from)
    }

    fn is_inline(&self, req: &Request) -> bool {
        super::routes::small_body(req)
    }
}

/// The statuses of a command's success answer (less 204 and 205, which carry no body).
pub const COMMAND_STATUSES: std::ops::RangeInclusive<u16> = 200..=299;

/// Most bytes of command answers one command route remembers for the retries of its keyed
/// requests, each counted with [`COMMAND_ANSWER_OVERHEAD_BYTES`]; the oldest go first. A retry
/// whose answer is gone (evicted, or from before a restart) is answered with the route's
/// status and no body.
pub const COMMAND_ANSWERS_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What one remembered answer costs besides its body (index, pointer, allocation), counted
/// so that tiny answers cannot grow the window past its bytes (at most 65,536 of them).
pub const COMMAND_ANSWER_OVERHEAD_BYTES: usize = 64;

/// The rendered answers of a command route's keyed executions, by the first log index of
/// their events (a retry's receipt names the same index), in index order.
#[derive(Default)]
struct CommandAnswers {
    entries: VecDeque<(u64, Arc<[u8]>)>,
    bytes: usize,
}

impl CommandAnswers {
    fn cost(body: &[u8]) -> usize {
        body.len() + COMMAND_ANSWER_OVERHEAD_BYTES
    }

    fn remember(&mut self, index: u64, body: Arc<[u8]>) {
        if Self::cost(&body) > COMMAND_ANSWERS_BYTES_MAX {
            return;
        }
        // Completions come in log order almost always: a push at the back.
        match self.entries.back() {
            Some((last, _)) if *last >= index => {
                match self.entries.binary_search_by_key(&index, |(at, _)| *at) {
                    Ok(_) => return, // an index is one command: remembered already
                    Err(at) => self.entries.insert(at, (index, Arc::clone(&body))),
                }
            }
            _ => self.entries.push_back((index, Arc::clone(&body))),
        }
        self.bytes += Self::cost(&body);
        while self.bytes > COMMAND_ANSWERS_BYTES_MAX {
            let (_, evicted) = self
                .entries
                .pop_front()
                .expect("remembered bytes are held by remembered answers");
            self.bytes -= Self::cost(&evicted);
        }
    }

    fn get(&self, index: u64) -> Option<Arc<[u8]>> {
        let at = self
            .entries
            .binary_search_by_key(&index, |(at, _)| *at)
            .ok()?;
        Some(Arc::clone(&self.entries[at].1))
    }
}

/// A started app: the engine handle and the HTTP server.
pub struct Running {
    /// The engine handle.
    pub handle: Handle,
    /// The HTTP server.
    pub server: ServerHandle,
    /// The Raft node (cluster mode).
    pub node: Option<Arc<crate::raft::node::Node>>,
}

impl Running {
    /// Stops the server (finishing in-flight requests), then the engine.
    pub fn stop(self) -> Result<(), String> {
        self.server.shutdown();
        self.server.join().map_err(|e| e.to_string())?;
        // The node drives the engine's replica: stop it before the engine.
        drop(self.node);
        drop(self.handle);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_answers_stay_within_their_bytes_and_find_any_order() {
        let mut answers = CommandAnswers::default();
        let tiny: Arc<[u8]> = Arc::from(&b"1"[..]);
        let kept = COMMAND_ANSWERS_BYTES_MAX / CommandAnswers::cost(&tiny);
        for index in 0..(kept as u64 + 100) {
            answers.remember(index, Arc::clone(&tiny));
        }
        assert_eq!(
            answers.entries.len(),
            kept,
            "tiny answers count their overhead"
        );
        assert!(answers.bytes <= COMMAND_ANSWERS_BYTES_MAX);
        assert!(answers.get(0).is_none(), "the oldest went first");
        assert!(answers.get(kept as u64 + 99).is_some());
        // Out of order: found by binary search all the same.
        let mut answers = CommandAnswers::default();
        for index in [5, 9, 7, 1] {
            answers.remember(index, Arc::from(index.to_string().into_bytes()));
        }
        for index in [1u64, 5, 7, 9] {
            assert_eq!(
                answers.get(index).as_deref(),
                Some(index.to_string().as_bytes())
            );
        }
        assert!(answers.get(6).is_none());
    }
}
