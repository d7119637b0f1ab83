//! The command line of every Lithair app (`App::run`): subcommands, flags, environment overrides
//! and the optional `lithair.toml`.
//!
//! Owns: turning `argv`, the environment and a config file into a validated [`Command`].
//! Must not: perform I/O beyond what the caller hands in; parsing is a pure function so every
//! rule is table-tested (the ripgrep shape: low-level args, then validated high-level options).
//!
//! Precedence, highest first: command-line flags, `LITHAIR_*` environment variables,
//! `lithair.toml`, built-in defaults.

use crate::http::limits::{POLL_WINDOW_MAX_US, POLL_WINDOW_MAX_US_LIMIT};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Default HTTP port of `serve`.
pub const DEFAULT_PORT: u16 = 8080;
/// Default bind address of `serve`: loopback, so a fresh app is never exposed by accident.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Exit code of an app whose command line was refused (a usage error: unknown command or flag,
/// missing or malformed value), as the `lithair` tool and most Unix tools do; a command that
/// ran and failed exits 1.
pub const USAGE_ERROR_EXIT_CODE: u8 = 2;
/// Most members a static `--cluster` map may name.
pub const CLUSTER_MEMBERS_MAX: usize = 64;

/// A flag an application adds to `serve` (for example the bench server's `--items N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraFlag {
    /// Name without the leading dashes.
    pub name: &'static str,
    /// Placeholder of the value in `--help`, or `None` for a switch without a value.
    pub value_name: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

/// How a clustered leader confirms linearizable reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// A quorum heartbeat round per batch of reads (`read-index`, the default).
    #[default]
    ReadIndex,
    /// The leader's CheckQuorum lease, no round trip (`lease`): safe only while the nodes'
    /// clocks run at rates within the lease's safety margin of each other.
    Lease,
}

/// Where `serve` writes its access log (`--access-log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTo {
    /// Standard error (`--access-log -`).
    Stderr,
    /// A file, appended to (created if missing).
    File(PathBuf),
}

/// Options of `serve`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// HTTP port.
    pub port: u16,
    /// HTTP bind address.
    pub bind: IpAddr,
    /// Data directory (log, snapshots, lock file).
    pub data: PathBuf,
    /// This node's id in a cluster.
    pub node_id: Option<u64>,
    /// Port of the Raft peer protocol.
    pub peer_port: Option<u16>,
    /// Static cluster map: every member's id and peer address (this node included).
    pub cluster: Vec<(u64, SocketAddr)>,
    /// HTTP address of a running member to join dynamically.
    pub join: Option<SocketAddr>,
    /// Shared secret that authenticates peers.
    pub cluster_secret: Option<String>,
    /// How a clustered leader confirms linearizable reads (`--read-mode`).
    pub read_mode: ReadMode,
    /// Longest a reactor polls for events before it sleeps, in microseconds
    /// (`--poll-window-us`; `None`: the server's default, `http::limits::POLL_WINDOW_MAX_US`).
    pub poll_window_us: Option<u64>,
    /// Where a JSON line per answered request goes (`--access-log`; `None`: nowhere).
    pub access_log: Option<AccessLogTo>,
    /// Values of the application's extra flags, in the order given (switches carry `""`), then
    /// those set only by the environment or `lithair.toml`.
    pub extra: Vec<(String, String)>,
}

impl ServeOptions {
    /// The value of an application flag, if given.
    pub fn extra(&self, name: &str) -> Option<&str> {
        last_value(&self.extra, name)
    }
}

/// What `log` should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogCommand {
    /// Check every checksum of every segment.
    Verify,
    /// Print events as JSON lines, optionally filtered.
    Inspect {
        /// First index printed (inclusive).
        from: Option<u64>,
        /// Last index printed (inclusive).
        to: Option<u64>,
        /// Only events of this type.
        event_type: Option<String>,
    },
    /// Print counts and sizes.
    Stats,
    /// Find the first damage a start refuses and cut the log there (a dry run without
    /// `apply`); the app must not be running.
    Repair {
        /// Make the cut (`--apply`); without it, only report what it would lose.
        apply: bool,
    },
    /// Copy the data directory, beside the running server, to a new directory, and check
    /// the copy (a single node's; see `engine::backup`).
    Backup {
        /// The destination: absent or empty.
        to: PathBuf,
    },
}

/// What `cluster` should do against a running node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Print `/_lithair/cluster` of the node.
    Status,
    /// Remove node `id` from the cluster, asked through the node at `--node` (any member:
    /// it forwards to the leader); without `id`, that node itself leaves. Removing a node that
    /// is down for good (a dead disk, a damaged data directory) goes through a live one.
    Leave {
        /// The node to remove; `None`: the node asked.
        id: Option<u64>,
    },
    /// Ask the leader to hand leadership to `to` (or to the most up-to-date follower).
    TransferLeader {
        /// Target node id.
        to: Option<u64>,
    },
}

/// A validated command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the server.
    Serve(ServeOptions),
    /// Rebuild the state from the log and print count, time and digest.
    Replay {
        /// Data directory.
        data: PathBuf,
    },
    /// Log tools.
    Log {
        /// Data directory.
        data: PathBuf,
        /// What to do.
        action: LogCommand,
    },
    /// Take a snapshot of the data directory now.
    Snapshot {
        /// Data directory.
        data: PathBuf,
    },
    /// Talk to a running node.
    Cluster {
        /// HTTP address of the node.
        node: SocketAddr,
        /// What to do.
        action: ClusterCommand,
        /// The cluster secret that signs the request (`leave` and `transfer-leader` need it).
        secret: Option<String>,
    },
    /// Print this text and exit 0.
    Help(String),
}

/// Why a command line was refused. Its Display is meant for a person, followed by a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (try --help)", self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// An error saying `message`, for a command line an application checks itself.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
        }
    }
}

fn error(message: impl Into<String>) -> CliError {
    CliError::new(message)
}

/// Everything `parse` reads besides `argv`.
pub struct Sources<'a> {
    /// The application's name (default data directory `./data/<name>`).
    pub app_name: &'a str,
    /// Flags the application adds to `serve`.
    pub extra_flags: &'a [ExtraFlag],
    /// Looks up an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Text of `lithair.toml`, if present.
    pub config_file: Option<&'a str>,
}

/// Parses the arguments after the program name.
///
/// `serve` is the default when the first argument is a flag or there is none, so
/// `bench_server --port 8080 --data d` serves.
pub fn parse(args: &[String], sources: &Sources<'_>) -> Result<Command, CliError> {
    let file = match sources.config_file {
        Some(text) => parse_config_file(text)?,
        None => Vec::new(),
    };
    check_file_keys(&file, sources.extra_flags)?;
    let (sub, rest) = match args.first().map(String::as_str) {
        None => ("serve", &args[..0]),
        Some(first) if first.starts_with('-') && first != "--help" && first != "-h" => {
            ("serve", args)
        }
        Some(first) => (first, &args[1..]),
    };
    let layered = Layered {
        sources,
        file: &file,
    };
    // `--help` works after any subcommand (`blog log inspect --help`), not only first.
    let known = matches!(sub, "serve" | "replay" | "snapshot" | "log" | "cluster");
    if known && rest.iter().any(|arg| arg == "--help" || arg == "-h") {
        return Ok(Command::Help(usage(sources)));
    }
    match sub {
        "serve" => serve(rest, &layered),
        "replay" => Ok(Command::Replay {
            data: data_only(rest, &layered, "replay")?,
        }),
        "snapshot" => Ok(Command::Snapshot {
            data: data_only(rest, &layered, "snapshot")?,
        }),
        "log" => log(rest, &layered),
        "cluster" => cluster(rest, &layered),
        "help" | "--help" | "-h" => Ok(Command::Help(usage(sources))),
        other => Err(error(format!("unknown command `{other}`"))),
    }
}

/// Flags, environment and file, looked up in precedence order.
struct Layered<'a> {
    sources: &'a Sources<'a>,
    file: &'a [(String, String)],
}

impl Layered<'_> {
    /// The value of setting `key` (a flag name like `port`) from the environment
    /// (`LITHAIR_PORT`) or the config file (`port = 8080`).
    fn fallback(&self, key: &str) -> Option<String> {
        let env_name = format!("LITHAIR_{}", key.to_ascii_uppercase().replace('-', "_"));
        if let Some(value) = (self.sources.env)(&env_name) {
            return Some(value);
        }
        self.file
            .iter()
            .rev()
            .find(|(k, _)| k.replace('_', "-") == key)
            .map(|(_, v)| v.clone())
    }

    fn default_data(&self) -> PathBuf {
        PathBuf::from("data").join(self.sources.app_name)
    }
}

/// Splits `--name value` / `--name=value` pairs of `command` (named in errors): flags in
/// `switches` take no value and carry `""`, flags in `valued` take one, in the order given.
///
/// Any other word is refused by name, before its missing value could be blamed instead, so a
/// misspelled filter (`--form 5`) is a usage error rather than ignored. A valued flag followed
/// by another flag (`--data --apply`) is missing its value; a value that really starts with
/// `--` is given as `--name=--value`. A switch given a value (`--apply=no`) is refused, so it
/// cannot be read as on. One parser for every command line of the crate: `App::run`'s
/// subcommands and the `lithair` tool.
pub fn flag_pairs(
    args: &[String],
    command: &str,
    switches: &[&str],
    valued: &[&str],
) -> Result<Vec<(String, String)>, CliError> {
    let mut pairs = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(error(format!("unexpected argument `{arg}`")));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        let value = if switches.contains(&name) {
            if inline.is_some() {
                return Err(error(format!("`{arg}`: `--{name}` takes no value")));
            }
            String::new()
        } else if valued.contains(&name) {
            match inline {
                Some(value) => value.to_string(),
                None => rest
                    .next()
                    .filter(|value| !value.starts_with("--"))
                    .ok_or_else(|| error(format!("flag `--{name}` needs a value")))?
                    .clone(),
            }
        } else {
            return Err(error(format!("unknown flag `--{name}` for `{command}`")));
        };
        pairs.push((name.to_string(), value));
    }
    Ok(pairs)
}

/// The value of the last `(name, value)` pair named `name`: a flag given twice takes its last
/// value, as a later setting overrides an earlier one.
fn last_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A command line split by [`flag_pairs`], read by name and type: the small argument parser
/// of the examples and bench tools, so each refuses the same mistakes as `App::run` (an
/// unknown flag, a missing value, a number out of its type's range) instead of ignoring or
/// truncating them.
#[derive(Clone, Debug)]
pub struct Flags {
    pairs: Vec<(String, String)>,
}

impl Flags {
    /// Splits `args` (the words after the command) with [`flag_pairs`]; `command` names the
    /// command in errors.
    pub fn parse(
        args: &[String],
        command: &str,
        switches: &[&str],
        valued: &[&str],
    ) -> Result<Flags, CliError> {
        flag_pairs(args, command, switches, valued).map(|pairs| Flags { pairs })
    }

    /// Whether `--help` or `-h` is among `args`: asked for, the usage is the answer wherever
    /// it stands, before anything else is checked.
    pub fn asks_help(args: &[String]) -> bool {
        args.iter().any(|arg| arg == "--help" || arg == "-h")
    }

    /// The value of `--name` (the last one given), if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        last_value(&self.pairs, name)
    }

    /// Whether switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.pairs.iter().any(|(flag, _)| flag == name)
    }

    /// The value of `--name` parsed as `T`, or `default` when absent; a value that does not
    /// parse (`--port 70000` for a `u16`) is an error naming the flag.
    pub fn get_or<T>(&self, name: &str, default: T) -> Result<T, CliError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// The value of `--name` parsed as `T`, if given.
    pub fn get<T>(&self, name: &str) -> Result<Option<T>, CliError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.value(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e| error(format!("`--{name} {text}`: {e}"))),
        }
    }

    /// The value of `--name` parsed as `T`; its absence is an error.
    pub fn require<T>(&self, name: &str) -> Result<T, CliError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        self.get(name)?
            .ok_or_else(|| error(format!("`--{name}` is required")))
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, CliError> {
    value
        .parse()
        .map_err(|_| error(format!("`--{flag}` expects a number, got `{value}`")))
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, CliError> {
    value.parse().map_err(|_| {
        // `parse` does no I/O, so no name lookup: say so rather than blame the shape.
        error(format!(
            "`--{flag}` expects IP:PORT (a numeric address like 127.0.0.1:8080; host names \
                 are not resolved), got `{value}`"
        ))
    })
}

/// The built-in settings of `serve`: flags, `LITHAIR_*` variables and `lithair.toml` keys.
const KNOWN: [&str; 11] = [
    "port",
    "bind",
    "data",
    "node-id",
    "peer-port",
    "cluster",
    "join",
    "cluster-secret",
    "read-mode",
    "poll-window-us",
    "access-log",
];

/// Refuses a `lithair.toml` key that names no setting (`prot = 8080`): silently ignored, the
/// typo would leave the default in force with nothing said.
fn check_file_keys(file: &[(String, String)], extra: &[ExtraFlag]) -> Result<(), CliError> {
    for (key, _) in file {
        let name = key.replace('_', "-");
        let known = KNOWN.contains(&name.as_str()) || extra.iter().any(|flag| flag.name == name);
        if !known {
            let mut names: Vec<&str> = KNOWN.to_vec();
            names.extend(extra.iter().map(|flag| flag.name));
            return Err(error(format!(
                "lithair.toml: unknown setting `{key}` (settings: {})",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

fn serve(args: &[String], layered: &Layered<'_>) -> Result<Command, CliError> {
    let extra = layered.sources.extra_flags;
    let switches: Vec<&str> = extra
        .iter()
        .filter(|flag| flag.value_name.is_none())
        .map(|flag| flag.name)
        .chain(["help"])
        .collect();
    let valued: Vec<&str> = extra
        .iter()
        .filter(|flag| flag.value_name.is_some())
        .map(|flag| flag.name)
        .chain(KNOWN)
        .collect();
    let pairs = flag_pairs(args, "serve", &switches, &valued)?;
    if pairs.iter().any(|(name, _)| name == "help") {
        return Ok(Command::Help(usage(layered.sources)));
    }
    let mut given: Vec<(String, String)> = Vec::new();
    let mut extra_values = Vec::new();
    for (name, value) in pairs {
        if KNOWN.contains(&name.as_str()) {
            given.push((name, value));
        } else if extra.iter().any(|flag| flag.name == name) {
            extra_values.push((name, value));
        } else {
            return Err(error(format!("unknown flag `--{name}` for `serve`")));
        }
    }
    // The application's flags are settings like the built-in ones (`--help` lists them under
    // the same heading): one not on the command line comes from the environment or the file.
    for flag in extra {
        if extra_values.iter().any(|(name, _)| name == flag.name) {
            continue;
        }
        let Some(value) = layered.fallback(flag.name) else {
            continue;
        };
        if flag.value_name.is_some() {
            extra_values.push((flag.name.to_string(), value));
        } else {
            match value.as_str() {
                "true" | "1" => extra_values.push((flag.name.to_string(), String::new())),
                "false" | "0" => {}
                other => {
                    return Err(error(format!(
                        "`{}` is a switch: set it to true or false, not `{other}`",
                        flag.name
                    )))
                }
            }
        }
    }
    let setting = |key: &str| -> Option<String> {
        last_value(&given, key)
            .map(str::to_string)
            .or_else(|| layered.fallback(key))
    };
    let options = ServeOptions {
        port: match setting("port") {
            Some(value) => parse_number("port", &value)?,
            None => DEFAULT_PORT,
        },
        bind: match setting("bind") {
            Some(value) => value
                .parse()
                .map_err(|_| error(format!("`--bind` expects an IP address, got `{value}`")))?,
            None => DEFAULT_BIND,
        },
        data: match setting("data") {
            Some(value) => data_dir(value)?,
            None => layered.default_data(),
        },
        node_id: setting("node-id")
            .map(|v| parse_number("node-id", &v))
            .transpose()?,
        peer_port: setting("peer-port")
            .map(|v| parse_number("peer-port", &v))
            .transpose()?,
        cluster: match setting("cluster") {
            Some(value) => parse_cluster_map(&value)?,
            None => Vec::new(),
        },
        join: setting("join")
            .map(|v| parse_addr("join", &v))
            .transpose()?,
        cluster_secret: setting("cluster-secret"),
        read_mode: parse_read_mode(setting("read-mode").as_deref())?,
        poll_window_us: setting("poll-window-us")
            .map(|v| parse_poll_window(&v))
            .transpose()?,
        access_log: setting("access-log")
            .map(|v| parse_access_log(&v))
            .transpose()?,
        extra: extra_values,
    };
    validate_cluster(&options)?;
    Ok(Command::Serve(options))
}

/// Parses `1@127.0.0.1:9081,2@127.0.0.1:9082`.
pub fn parse_cluster_map(text: &str) -> Result<Vec<(u64, SocketAddr)>, CliError> {
    let mut members: Vec<(u64, SocketAddr)> = Vec::new();
    for item in text.split(',').filter(|item| !item.trim().is_empty()) {
        let (id, addr) = item
            .trim()
            .split_once('@')
            .ok_or_else(|| error(format!("cluster member `{item}` is not ID@IP:PORT")))?;
        let id: u64 = parse_number("cluster", id)?;
        if id == 0 {
            return Err(error("node ids start at 1"));
        }
        if members.iter().any(|(known, _)| *known == id) {
            return Err(error(format!("node id {id} appears twice in `--cluster`")));
        }
        members.push((id, parse_addr("cluster", addr)?));
        if members.len() > CLUSTER_MEMBERS_MAX {
            return Err(error(format!(
                "`--cluster` names more than {CLUSTER_MEMBERS_MAX} members"
            )));
        }
    }
    Ok(members)
}

fn validate_cluster(options: &ServeOptions) -> Result<(), CliError> {
    let clustered = !options.cluster.is_empty() || options.join.is_some();
    if !clustered {
        return Ok(());
    }
    let node_id = options
        .node_id
        .ok_or_else(|| error("`--cluster` and `--join` need `--node-id`"))?;
    if options.peer_port.is_none() {
        return Err(error("`--cluster` and `--join` need `--peer-port`"));
    }
    if !options.cluster.is_empty() && !options.cluster.iter().any(|(id, _)| *id == node_id) {
        return Err(error(format!(
            "`--cluster` does not name this node (`--node-id {node_id}`)"
        )));
    }
    if options.cluster.len() > 1 && options.join.is_some() {
        return Err(error("give either `--cluster` or `--join`, not both"));
    }
    Ok(())
}

/// A `--data` value (or `LITHAIR_DATA`, or `data =`): an empty one would put the log and the
/// lock file in the current directory, so it is refused.
fn data_dir(value: String) -> Result<PathBuf, CliError> {
    if value.trim().is_empty() {
        return Err(error("`--data` needs a directory, got an empty value"));
    }
    Ok(PathBuf::from(value))
}

/// The data directory given by a flag, else by the environment or the config file, else the
/// default.
fn data_setting(flag: Option<String>, layered: &Layered<'_>) -> Result<PathBuf, CliError> {
    match flag.or_else(|| layered.fallback("data")) {
        Some(value) => data_dir(value),
        None => Ok(layered.default_data()),
    }
}

fn data_only(args: &[String], layered: &Layered<'_>, command: &str) -> Result<PathBuf, CliError> {
    // `data` is the only flag `flag_pairs` lets through; the last one given wins.
    let data = flag_pairs(args, command, &[], &["data"])?
        .pop()
        .map(|(_, value)| value);
    data_setting(data, layered)
}

fn log(args: &[String], layered: &Layered<'_>) -> Result<Command, CliError> {
    let (data, action) = parse_log(args)?;
    let data = data_setting(data, layered)?;
    Ok(Command::Log { data, action })
}

/// Parses the words after `log` (`verify --data d`, `inspect --from 5`, ...): the `--data`
/// value if given, and the action. Shared by `App::run` (whose data directory falls back to the
/// environment, the config file, then `data/<app>`) and the `lithair` tool (which requires it).
pub fn parse_log(args: &[String]) -> Result<(Option<String>, LogCommand), CliError> {
    let (action, rest) = match args.first().map(String::as_str) {
        Some("verify") => ("verify", &args[1..]),
        Some("inspect") => ("inspect", &args[1..]),
        Some("stats") => ("stats", &args[1..]),
        Some("repair") => ("repair", &args[1..]),
        Some("backup") => ("backup", &args[1..]),
        Some(other) => return Err(error(format!("unknown `log` action `{other}`"))),
        None => {
            return Err(error(
                "`log` needs an action: verify, inspect, stats, repair or backup",
            ))
        }
    };
    let mut data = None;
    let mut apply = false;
    let (mut from, mut to, mut event_type) = (None, None, None);
    let mut destination = None;
    let valued: &[&str] = match action {
        "inspect" => &["data", "from", "to", "type"],
        "backup" => &["data", "to"],
        _ => &["data"],
    };
    let switches: &[&str] = match action {
        "repair" => &["apply"],
        _ => &[],
    };
    for (name, value) in flag_pairs(rest, &format!("log {action}"), switches, valued)? {
        match name.as_str() {
            "data" => data = Some(value),
            "apply" => apply = true,
            "from" => from = Some(parse_number("from", &value)?),
            "to" if action == "backup" => {
                if value.trim().is_empty() {
                    return Err(error("`--to` needs a directory, got an empty value"));
                }
                destination = Some(PathBuf::from(value));
            }
            "to" => to = Some(parse_number("to", &value)?),
            "type" => event_type = Some(value),
            other => unreachable!("flag_pairs let `--{other}` through for `log {action}`"),
        }
    }
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(error(format!("`--from {from}` is after `--to {to}`")));
        }
    }
    let action = match action {
        "verify" => LogCommand::Verify,
        "stats" => LogCommand::Stats,
        "repair" => LogCommand::Repair { apply },
        "backup" => LogCommand::Backup {
            to: destination.ok_or_else(|| error("`log backup` needs `--to DIR`"))?,
        },
        _ => LogCommand::Inspect {
            from,
            to,
            event_type,
        },
    };
    Ok((data, action))
}

fn cluster(args: &[String], layered: &Layered<'_>) -> Result<Command, CliError> {
    let (action, rest) = match args.first().map(String::as_str) {
        Some(action @ ("status" | "leave" | "transfer-leader")) => (action, &args[1..]),
        Some(other) => return Err(error(format!("unknown `cluster` action `{other}`"))),
        None => {
            return Err(error(
                "`cluster` needs an action: status, leave or transfer-leader",
            ))
        }
    };
    let mut node = None;
    let mut to = None;
    let mut id = None;
    let mut secret = None;
    let valued: &[&str] = match action {
        "transfer-leader" => &["node", "cluster-secret", "to"],
        "leave" => &["node", "cluster-secret", "id"],
        _ => &["node", "cluster-secret"],
    };
    // The node may also be named by its address alone, first (`cluster status
    // 127.0.0.1:8082`): issue 7 says "against a running node" without naming a flag.
    let rest = match rest.first() {
        Some(first) if !first.starts_with('-') => {
            node = Some(parse_addr("node", first)?);
            &rest[1..]
        }
        _ => rest,
    };
    for (name, value) in flag_pairs(rest, &format!("cluster {action}"), &[], valued)? {
        match (action, name.as_str()) {
            (_, "node") => node = Some(parse_addr("node", &value)?),
            (_, "cluster-secret") => secret = Some(value),
            ("transfer-leader", "to") => to = Some(parse_number("to", &value)?),
            ("leave", "id") => id = Some(parse_number("id", &value)?),
            _ => {
                return Err(error(format!(
                    "unknown flag `--{name}` for `cluster {action}`"
                )))
            }
        }
    }
    let node = node.unwrap_or(SocketAddr::new(DEFAULT_BIND, DEFAULT_PORT));
    let action = match action {
        "status" => ClusterCommand::Status,
        "leave" => ClusterCommand::Leave { id },
        _ => ClusterCommand::TransferLeader { to },
    };
    let mut secret = secret
        .or_else(|| layered.fallback("cluster-secret"))
        .filter(|secret| !secret.is_empty());
    // A cluster on loopback alone may run on the built-in secret (see
    // `cluster::LOOPBACK_CLUSTER_SECRET`): a node on loopback is asked with it.
    if action != ClusterCommand::Status && secret.is_none() && node.ip().is_loopback() {
        secret = Some(super::cluster::LOOPBACK_CLUSTER_SECRET.to_string());
    }
    // Every other cluster has a secret and every node refuses an unsigned `leave` or
    // `transfer-leader` (401): say what is missing here rather than send a request bound to
    // come back "missing or malformed signature time".
    if action != ClusterCommand::Status && secret.is_none() {
        let name = match action {
            ClusterCommand::Leave { .. } => "leave",
            _ => "transfer-leader",
        };
        return Err(error(format!(
            "`cluster {name}` is signed with the cluster secret: give `--cluster-secret S` or \
             set LITHAIR_CLUSTER_SECRET"
        )));
    }
    Ok(Command::Cluster {
        node,
        action,
        secret,
    })
}

fn parse_poll_window(value: &str) -> Result<u64, CliError> {
    let us: u64 = parse_number("poll-window-us", value)?;
    if us > POLL_WINDOW_MAX_US_LIMIT {
        return Err(error(format!(
            "`--poll-window-us` is at most {POLL_WINDOW_MAX_US_LIMIT} (a millisecond), got `{us}`"
        )));
    }
    Ok(us)
}

fn parse_access_log(value: &str) -> Result<AccessLogTo, CliError> {
    match value {
        "" => Err(error(
            "`--access-log` expects a file to append to, or - for standard error",
        )),
        "-" => Ok(AccessLogTo::Stderr),
        path => Ok(AccessLogTo::File(PathBuf::from(path))),
    }
}

fn parse_read_mode(value: Option<&str>) -> Result<ReadMode, CliError> {
    match value {
        None | Some("read-index") => Ok(ReadMode::ReadIndex),
        Some("lease") => Ok(ReadMode::Lease),
        Some(other) => Err(error(format!(
            "`--read-mode` is `read-index` or `lease`, not `{other}`"
        ))),
    }
}

/// Reads the flat subset of TOML that `lithair.toml` uses: `key = value` lines, `#` comments,
/// quoted or bare values. Sections are flattened (`[serve]` keys are plain keys).
pub fn parse_config_file(text: &str) -> Result<Vec<(String, String)>, CliError> {
    let mut settings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            error(format!(
                "lithair.toml line {}: expected `key = value`",
                number + 1
            ))
        })?;
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').ok_or_else(|| {
                error(format!("lithair.toml line {}: unclosed string", number + 1))
            })?,
            None => value.split('#').next().unwrap_or("").trim(),
        };
        settings.push((key.trim().to_string(), value.to_string()));
    }
    Ok(settings)
}

/// The `--help` text.
pub fn usage(sources: &Sources<'_>) -> String {
    let mut text = format!(
        "{name}: a Lithair application\n\n\
         USAGE:\n  {name} [serve] [FLAGS]\n  {name} replay [--data DIR]\n  \
         {name} log verify|stats [--data DIR]\n  \
         {name} log inspect [--data DIR] [--from N] [--to N] [--type EVENT]\n  \
         {name} log repair [--data DIR] [--apply]\n  \
         {name} log backup [--data DIR] --to NEW_DIR\n  \
         {name} snapshot [--data DIR]\n  \
         {name} cluster status [[--node] IP:PORT]\n  \
         {name} cluster leave [[--node] IP:PORT] [--id ID] [--cluster-secret S]\n  \
         {name} cluster transfer-leader [[--node] IP:PORT] [--to ID] [--cluster-secret S]\n\n\
         SERVE FLAGS (environment LITHAIR_<FLAG>, or `flag = value` in lithair.toml):\n  \
         --port P              HTTP port (default {port})\n  \
         --bind IP             HTTP address (default {bind})\n  \
         --data DIR            data directory (default data/{name})\n  \
         --node-id N           this node's id in a cluster\n  \
         --peer-port P         port of the Raft peer protocol\n  \
         --cluster MAP         static cluster: 1@IP:PORT,2@IP:PORT,...\n  \
         --join IP:PORT        join the cluster of a running node (its HTTP address)\n  \
         --cluster-secret S    shared secret that authenticates peers (and `cluster` commands;\n                        \
         optional when every address is loopback)\n  \
         --read-mode M         linearizable reads: read-index (default) or lease\n  \
         --poll-window-us US   longest a reactor polls before it sleeps (default {poll};\n                        \
         0: sleep at once, for a machine whose CPUs are shared)\n  \
         --access-log FILE     a JSON line per answered request, appended to FILE (- for\n                        \
         standard error; default: none)\n",
        name = sources.app_name,
        port = DEFAULT_PORT,
        bind = DEFAULT_BIND,
        poll = POLL_WINDOW_MAX_US,
    );
    for flag in sources.extra_flags {
        let left = match flag.value_name {
            Some(value) => format!("--{} {}", flag.name, value),
            None => format!("--{}", flag.name),
        };
        text.push_str(&format!("  {left:<21} {}\n", flag.help));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const ITEMS: [ExtraFlag; 1] = [ExtraFlag {
        name: "items",
        value_name: Some("N"),
        help: "preload items 1..N",
    }];

    fn check(text: &str) -> Result<Command, CliError> {
        let sources = Sources {
            app_name: "blog",
            extra_flags: &ITEMS,
            env: &no_env,
            config_file: None,
        };
        parse(&args(text), &sources)
    }

    fn serve_options(text: &str) -> ServeOptions {
        match check(text) {
            Ok(Command::Serve(options)) => options,
            other => panic!("expected serve for `{text}`, got {other:?}"),
        }
    }

    #[test]
    fn serve_is_the_default_and_has_defaults() {
        let options = serve_options("");
        assert_eq!(options.port, DEFAULT_PORT);
        assert_eq!(options.bind, DEFAULT_BIND);
        assert_eq!(options.data, PathBuf::from("data/blog"));
        assert_eq!(serve_options("--port 9000").port, 9000);
        assert_eq!(serve_options("serve --port=9001").port, 9001);
    }

    #[test]
    fn bench_server_flags() {
        let options = serve_options("--port 8080 --items 100 --data /tmp/d");
        assert_eq!(options.extra("items"), Some("100"));
        assert_eq!(options.data, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for text in [
            "--port",
            "--port abc",
            "--port 70000",
            "--nope 1",
            "serve extra",
            "frobnicate",
            "log",
            "log explode",
            "log inspect --from 9 --to 3",
            "cluster",
            "--cluster 1@127.0.0.1:9081",
            "--node-id 2 --peer-port 9 --cluster 1@127.0.0.1:9081",
            "--node-id 1 --peer-port 9 --cluster 1@127.0.0.1:9081,1@127.0.0.1:9082",
            "--bind nowhere",
            "--data=",
            "serve --port 1 --data=",
            "replay --data=",
            "snapshot --data= ",
            "log verify --data=",
        ] {
            assert!(check(text).is_err(), "`{text}` should be refused");
        }
    }

    #[test]
    fn help_works_after_every_subcommand() {
        for text in [
            "serve --help",
            "replay --help",
            "snapshot --help",
            "log --help",
            "log inspect --help",
            "log verify --data d -h",
            "cluster --help",
            "cluster status --help",
        ] {
            assert!(
                matches!(check(text), Ok(Command::Help(_))),
                "`{text}` should print the help, got {:?}",
                check(text)
            );
        }
    }

    #[test]
    fn an_unknown_flag_is_named_even_without_a_value() {
        for (text, flag) in [
            ("serve --bogus", "--bogus"),
            ("--port 1 --bogus", "--bogus"),
            ("replay --bogus", "--bogus"),
            ("snapshot --port", "--port"),
            ("log stats --from", "--from"),
            ("log inspect --bogus", "--bogus"),
            ("cluster status --to", "--to"),
        ] {
            let err = check(text).expect_err(text);
            assert!(
                err.message.contains("unknown flag") && err.message.contains(flag),
                "`{text}`: {err}"
            );
        }
        let err = check("cluster status --node localhost:8080").expect_err("a name");
        assert!(err.message.contains("not resolved"), "{err}");
        let err = check("serve --port").expect_err("value missing");
        assert!(err.message.contains("needs a value"), "{err}");
        // A valued flag followed by a flag is missing its value; before, `--data` took
        // `--apply` as the directory and the repair ran dry on a path named `--apply`.
        let err = check("log repair --data --apply").expect_err("value missing");
        assert!(err.message.contains("`--data` needs a value"), "{err}");
        let options = serve_options("serve --cluster-secret=--odd --port 8080");
        assert_eq!(options.cluster_secret.as_deref(), Some("--odd"));
    }

    /// The examples' and bench tools' parser: typed values with their range checked (a port
    /// past `u16` was truncated by `as u16` before), a required flag named when missing,
    /// switches, the last of a repeated flag, and `--help` anywhere.
    #[test]
    fn flags_read_typed_values_and_name_what_is_wrong() {
        let words =
            |text: &str| -> Vec<String> { text.split_whitespace().map(str::to_string).collect() };
        let parse = |text: &str| Flags::parse(&words(text), "bench", &["deflate"], &["port", "n"]);
        let flags = parse("--port 8080 --deflate --n=3 --n 4").expect("valid");
        assert_eq!(flags.require::<u16>("port"), Ok(8080));
        assert_eq!(flags.get_or::<u32>("n", 1), Ok(4));
        assert!(flags.switch("deflate"));
        let flags = parse("--port 70000").expect("valid words");
        let err = flags.require::<u16>("port").expect_err("out of range");
        assert!(err.message.contains("--port 70000"), "{err}");
        let err = parse("")
            .expect("valid")
            .require::<u16>("port")
            .expect_err("missing");
        assert!(err.message.contains("`--port` is required"), "{err}");
        assert_eq!(parse("").expect("valid").get_or("n", 7u32), Ok(7));
        let err = parse("--prot 1").expect_err("unknown");
        assert!(
            err.message.contains("--prot") && err.message.contains("bench"),
            "{err}"
        );
        assert!(parse("--deflate=1").is_err(), "a switch takes no value");
        assert!(Flags::asks_help(&words("--port 1 -h")));
        assert!(!Flags::asks_help(&words("--port 1")));
    }

    #[test]
    fn static_cluster() {
        let options = serve_options(
            "serve --node-id 1 --port 8081 --peer-port 9081 --data d1 \
             --cluster 1@127.0.0.1:9081,2@127.0.0.1:9082,3@127.0.0.1:9083",
        );
        assert_eq!(options.node_id, Some(1));
        assert_eq!(options.cluster.len(), 3);
        assert_eq!(options.cluster[2].1, "127.0.0.1:9083".parse().unwrap());
    }

    #[test]
    fn dynamic_join() {
        let options = serve_options(
            "serve --node-id 4 --port 8084 --peer-port 9084 --data d4 --join 127.0.0.1:8081",
        );
        assert_eq!(options.join, Some("127.0.0.1:8081".parse().unwrap()));
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            check("replay --data x").unwrap(),
            Command::Replay {
                data: PathBuf::from("x")
            }
        );
        assert_eq!(
            check("log inspect --from 3 --type PostCreated").unwrap(),
            Command::Log {
                data: PathBuf::from("data/blog"),
                action: LogCommand::Inspect {
                    from: Some(3),
                    to: None,
                    event_type: Some("PostCreated".into())
                }
            }
        );
        for (line, apply) in [("log repair", false), ("log repair --apply --data x", true)] {
            assert!(
                matches!(
                    check(line),
                    Ok(Command::Log { action: LogCommand::Repair { apply: a }, .. }) if a == apply
                ),
                "{line}"
            );
        }
        assert!(
            check("log repair --apply=no").is_err(),
            "a switch takes no value"
        );
        assert!(check("log verify --apply").is_err());
        assert!(matches!(check("--help"), Ok(Command::Help(_))));
        assert!(matches!(check("serve --help"), Ok(Command::Help(_))));
        assert!(matches!(
            check("cluster transfer-leader --node 127.0.0.1:8082 --to 3 --cluster-secret s"),
            Ok(Command::Cluster {
                action: ClusterCommand::TransferLeader { to: Some(3) },
                secret: Some(_),
                ..
            })
        ));
        // A node refuses both unsigned: off loopback, the command line says so before sending
        // anything.
        for line in [
            "cluster transfer-leader --node 10.0.0.2:8082 --to 3",
            "cluster leave --node 10.0.0.4:8084",
            "cluster leave --node 10.0.0.4:8084 --cluster-secret=",
        ] {
            let refused = check(line).expect_err(line).to_string();
            assert!(refused.contains("--cluster-secret"), "{line}: {refused}");
        }
        // On loopback, a cluster may run on the built-in secret: it signs what names none.
        for line in [
            "cluster transfer-leader --node 127.0.0.1:8082 --to 3",
            "cluster leave --node 127.0.0.1:8084",
            "cluster leave 127.0.0.1:8084 --cluster-secret=",
        ] {
            match check(line) {
                Ok(Command::Cluster { secret, .. }) => assert_eq!(
                    secret.as_deref(),
                    Some(super::super::cluster::LOOPBACK_CLUSTER_SECRET),
                    "{line}"
                ),
                other => panic!("{line}: {other:?}"),
            }
        }
        // The node may be named by its address alone, first.
        assert_eq!(
            check("cluster status 127.0.0.1:8083"),
            check("cluster status --node 127.0.0.1:8083")
        );
        assert_eq!(
            check("cluster transfer-leader 127.0.0.1:8083 --to 2 --cluster-secret s"),
            check("cluster transfer-leader --node 127.0.0.1:8083 --to 2 --cluster-secret s")
        );
        assert!(check("cluster status localhost:8083").is_err());
        assert!(check("cluster status 127.0.0.1:8083 127.0.0.1:8084").is_err());
        assert!(matches!(
            check("cluster status --node 127.0.0.1:8082"),
            Ok(Command::Cluster { secret: None, .. })
        ));
        assert_eq!(
            check("cluster leave --node 127.0.0.1:8084 --cluster-secret s"),
            Ok(Command::Cluster {
                node: "127.0.0.1:8084".parse().unwrap(),
                action: ClusterCommand::Leave { id: None },
                secret: Some("s".into()),
            })
        );
        // A node that is down for good is removed through a live one.
        assert_eq!(
            check("cluster leave --node 127.0.0.1:8081 --id 3 --cluster-secret s"),
            Ok(Command::Cluster {
                node: "127.0.0.1:8081".parse().unwrap(),
                action: ClusterCommand::Leave { id: Some(3) },
                secret: Some("s".into()),
            })
        );
        assert!(check("cluster transfer-leader --id 3 --cluster-secret s").is_err());
        assert!(check("cluster leave --id x --cluster-secret s").is_err());
    }

    #[test]
    fn read_mode_flag() {
        assert_eq!(serve_options("serve").read_mode, ReadMode::ReadIndex);
        assert_eq!(
            serve_options("serve --read-mode lease").read_mode,
            ReadMode::Lease
        );
        assert!(check("serve --read-mode fast").is_err());
    }

    #[test]
    fn poll_window_flag() {
        assert_eq!(serve_options("serve").poll_window_us, None);
        assert_eq!(
            serve_options("serve --poll-window-us 0").poll_window_us,
            Some(0)
        );
        assert_eq!(
            serve_options("serve --poll-window-us 1000").poll_window_us,
            Some(1000)
        );
        let too_long = check("serve --poll-window-us 1001").expect_err("over a millisecond");
        assert!(too_long.to_string().contains("at most 1000"), "{too_long}");
        assert!(check("serve --poll-window-us -1").is_err());
    }

    /// The blog's sources without extra flags, with `env` and the config file `file`.
    fn blog_sources<'a>(
        env: &'a dyn Fn(&str) -> Option<String>,
        file: Option<&'a str>,
    ) -> Sources<'a> {
        Sources {
            app_name: "blog",
            extra_flags: &[],
            env,
            config_file: file,
        }
    }

    #[test]
    fn access_log_flag() {
        assert_eq!(serve_options("serve").access_log, None);
        assert_eq!(
            serve_options("serve --access-log -").access_log,
            Some(AccessLogTo::Stderr)
        );
        assert_eq!(
            serve_options("serve --access-log /var/log/blog.jsonl").access_log,
            Some(AccessLogTo::File(PathBuf::from("/var/log/blog.jsonl")))
        );
        let empty_value = ["serve".to_string(), "--access-log".into(), String::new()];
        let empty = parse(&empty_value, &blog_sources(&no_env, None)).expect_err("no file named");
        assert!(empty.to_string().contains("--access-log"), "{empty}");
        // A setting like the others: from the environment, or `access_log =` in the file.
        let env = |name: &str| (name == "LITHAIR_ACCESS_LOG").then(|| "-".to_string());
        let Ok(Command::Serve(options)) = parse(&args(""), &blog_sources(&env, None)) else {
            panic!("serve expected")
        };
        assert_eq!(options.access_log, Some(AccessLogTo::Stderr));
        let from_file = blog_sources(&no_env, Some("access_log = \"logs/access.jsonl\"\n"));
        let Ok(Command::Serve(options)) = parse(&args(""), &from_file) else {
            panic!("serve expected")
        };
        let file = PathBuf::from("logs/access.jsonl");
        assert_eq!(options.access_log, Some(AccessLogTo::File(file)));
        assert!(usage(&from_file).contains("--access-log FILE"));
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let env = |name: &str| (name == "LITHAIR_PORT").then(|| "7000".to_string());
        let file = "# comment\n[serve]\nport = 6000\ndata = \"/srv/blog\"\n";
        let sources = Sources {
            app_name: "blog",
            extra_flags: &[],
            env: &env,
            config_file: Some(file),
        };
        let Ok(Command::Serve(options)) = parse(&args(""), &sources) else {
            panic!("serve expected")
        };
        assert_eq!(options.port, 7000, "environment beats file");
        assert_eq!(
            options.data,
            PathBuf::from("/srv/blog"),
            "file beats default"
        );
        let Ok(Command::Serve(options)) = parse(&args("--port 5000"), &sources) else {
            panic!("serve expected")
        };
        assert_eq!(options.port, 5000, "flag beats environment");
    }

    /// An application's flags come from the environment and the file too, as `--help` says
    /// (they used to be read from the command line only): `LITHAIR_ITEMS=7` or `items = 9`.
    #[test]
    fn application_flags_come_from_environment_and_file_too() {
        let flags = [
            ITEMS[0].clone(),
            ExtraFlag {
                name: "no-seed",
                value_name: None,
                help: "a switch",
            },
        ];
        let env = |name: &str| match name {
            "LITHAIR_ITEMS" => Some("7".to_string()),
            "LITHAIR_NO_SEED" => Some("true".to_string()),
            _ => None,
        };
        let serve_with = |line: &str, env: &dyn Fn(&str) -> Option<String>, file: &str| {
            let sources = Sources {
                app_name: "bench",
                extra_flags: &flags,
                env,
                config_file: Some(file),
            };
            match parse(&args(line), &sources) {
                Ok(Command::Serve(options)) => Ok(options),
                Ok(other) => panic!("serve expected, got {other:?}"),
                Err(refused) => Err(refused),
            }
        };
        let options = serve_with("", &env, "items = 9\n").expect("serve");
        assert_eq!(options.extra("items"), Some("7"), "environment beats file");
        assert_eq!(options.extra("no-seed"), Some(""), "a switch set to true");
        let options = serve_with("--items 5", &env, "items = 9\n").expect("serve");
        assert_eq!(options.extra("items"), Some("5"), "flag beats environment");
        let options = serve_with("", &no_env, "items = 9\nno_seed = false\n").expect("serve");
        assert_eq!(options.extra("items"), Some("9"), "file beats default");
        assert_eq!(options.extra("no-seed"), None, "a switch set to false");
        let refused = serve_with("", &no_env, "no-seed = maybe\n").expect_err("not a switch");
        assert!(refused.message.contains("no-seed"), "{refused}");
        // A key that names no setting, built-in or the application's, is a typo: refused.
        let refused = serve_with("", &no_env, "prot = 8080\n").expect_err("unknown key");
        assert!(
            refused.message.contains("unknown setting `prot`") && refused.message.contains("items"),
            "{refused}"
        );
        serve_with("", &no_env, "[serve]\nport = 8080\npeer_port = 9000\n").expect("known keys");
    }

    #[test]
    fn config_file_errors_name_the_line() {
        let err = parse_config_file("port = 1\nnonsense\n").unwrap_err();
        assert!(err.message.contains("line 2"), "{err}");
    }
}
