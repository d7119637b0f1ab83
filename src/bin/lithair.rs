//! The `lithair` command: log-level tools over a data directory (`lithair::engine::tools`).
//!
//! Owns: argument parsing and exit codes only. Must not: modify files or take the data
//! directory lock, except `log repair --apply` (which takes the lock, and cuts only what it
//! reported). Apps get the same tools, plus typed `replay` and `snapshot`, through
//! `App::run`.

use lithair::engine::tools;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  lithair replay --data DIR                 replay the log: event count, time, stream digest
  lithair log verify --data DIR             check every frame, envelope and snapshot
  lithair log inspect --data DIR [--from I] [--to J] [--type T]
                                            events as JSON lines (payload as hex)
  lithair log stats --data DIR              segments, frames, events per type
  lithair log repair --data DIR [--apply]   find the first damage a start refuses; with
                                            --apply, cut the log there (stop the server first)
  lithair snapshot --data DIR               list snapshots and check their checksums
                                            (taking one needs the app's types: `APP snapshot`)";

/// The flags after the command words, checked against what the command takes.
struct Args {
    /// `(name, value)` in the order given; a switch carries `""`.
    flags: Vec<(String, String)>,
}

impl Args {
    /// Splits `--name value` and `--name=value` pairs; `valued` flags take a value, `switches`
    /// none. Any other word is refused by name, so a misspelled filter (`--form 5`) or a flag
    /// without its value is a usage error instead of being ignored (printing every event).
    fn parse(words: &[String], valued: &[&str], switches: &[&str]) -> Result<Args, Failure> {
        let mut flags = Vec::new();
        let mut rest = words.iter();
        while let Some(word) = rest.next() {
            let Some(flag) = word.strip_prefix("--") else {
                return Err(Failure::Usage(format!("unexpected argument `{word}`")));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            let value = if switches.contains(&name) {
                if inline.is_some() {
                    return Err(Failure::Usage(format!("`{word}`: --{name} takes no value")));
                }
                String::new()
            } else if valued.contains(&name) {
                match inline {
                    Some(value) => value.to_string(),
                    None => rest
                        .next()
                        .filter(|value| !value.starts_with("--"))
                        .ok_or_else(|| Failure::Usage(format!("--{name} needs a value")))?
                        .clone(),
                }
            } else {
                return Err(Failure::Usage(format!("unknown flag `--{name}`")));
            };
            flags.push((name.to_string(), value));
        }
        Ok(Args { flags })
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(flag, _)| flag == name)
            .map(|(_, value)| value.as_str())
    }

    fn switch(&self, name: &str) -> bool {
        self.flags.iter().any(|(flag, _)| flag == name)
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Failure> {
        match self.value(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| Failure::Usage(format!("--{name} expects a number, got {text:?}"))),
        }
    }

    fn data_dir(&self) -> Result<PathBuf, Failure> {
        self.value("data")
            .map(PathBuf::from)
            .ok_or_else(|| Failure::Usage("missing --data DIR".to_string()))
    }
}

/// Why a command did not succeed: a wrong command line (exit 2, with the usage) or a failure
/// of the command itself (exit 1).
enum Failure {
    Usage(String),
    Run(String),
}

fn run(words: &[String]) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let command: Vec<&str> = words.iter().take(2).map(String::as_str).collect();
    // The command line is checked whole before anything runs.
    let result = match command.as_slice() {
        ["replay", ..] => {
            let args = Args::parse(&words[1..], &["data"], &[])?;
            tools::replay_stream(&args.data_dir()?, &mut out)
        }
        ["log", "verify", ..] => {
            let args = Args::parse(&words[2..], &["data"], &[])?;
            tools::log_verify(&args.data_dir()?, &mut out)
        }
        ["log", "inspect", ..] => {
            let args = Args::parse(&words[2..], &["data", "from", "to", "type"], &[])?;
            let dir = args.data_dir()?;
            let (from, to) = (args.number("from")?, args.number("to")?);
            tools::log_inspect(&dir, from, to, args.value("type"), &mut out)
        }
        ["log", "stats", ..] => {
            let args = Args::parse(&words[2..], &["data"], &[])?;
            tools::log_stats(&args.data_dir()?, &mut out)
        }
        ["log", "repair", ..] => {
            let args = Args::parse(&words[2..], &["data"], &["apply"])?;
            let dir = args.data_dir()?;
            lithair::engine::repair::log_repair(&dir, args.switch("apply"), &mut out)
        }
        ["snapshot", ..] => {
            let args = Args::parse(&words[1..], &["data"], &[])?;
            tools::snapshot_list(&args.data_dir()?, &mut out)
        }
        _ => return Err(Failure::Usage(String::new())),
    };
    result
        .and_then(|()| std::io::Write::flush(&mut out).map_err(|e| e.to_string()))
        .map_err(Failure::Run)
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    // Asked for, the usage is the answer (stdout, success); only a wrong command line is 2.
    let asked = |word: &String| matches!(word.as_str(), "--help" | "-h" | "help");
    if words.iter().any(asked) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&words) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            if !message.is_empty() {
                eprintln!("lithair: {message}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("lithair: {message}");
            ExitCode::FAILURE
        }
    }
}
