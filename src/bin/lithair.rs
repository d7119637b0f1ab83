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

struct Args {
    words: Vec<String>,
}

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        let at = self.words.iter().position(|word| word == name)?;
        self.words.get(at + 1).map(String::as_str)
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Failure> {
        match self.value(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| Failure::Usage(format!("{name} expects a number, got {text:?}"))),
        }
    }

    fn data_dir(&self) -> Result<PathBuf, Failure> {
        self.value("--data")
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

fn run(args: &Args) -> Result<(), Failure> {
    let command: Vec<&str> = args.words.iter().take(2).map(String::as_str).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // The command line is checked whole before anything runs.
    let result = match command.as_slice() {
        ["replay", ..] => tools::replay_stream(&args.data_dir()?, &mut out),
        ["log", "verify", ..] => tools::log_verify(&args.data_dir()?, &mut out),
        ["log", "inspect", ..] => {
            let dir = args.data_dir()?;
            let (from, to) = (args.number("--from")?, args.number("--to")?);
            tools::log_inspect(&dir, from, to, args.value("--type"), &mut out)
        }
        ["log", "stats", ..] => tools::log_stats(&args.data_dir()?, &mut out),
        ["log", "repair", ..] => {
            if let Some(word) = args.words.iter().find(|w| w.starts_with("--apply=")) {
                return Err(Failure::Usage(format!("`{word}`: --apply takes no value")));
            }
            let apply = args.words.iter().any(|word| word == "--apply");
            lithair::engine::repair::log_repair(&args.data_dir()?, apply, &mut out)
        }
        ["snapshot", ..] => tools::snapshot_list(&args.data_dir()?, &mut out),
        _ => return Err(Failure::Usage(String::new())),
    };
    result
        .and_then(|()| std::io::Write::flush(&mut out).map_err(|e| e.to_string()))
        .map_err(Failure::Run)
}

fn main() -> ExitCode {
    let args = Args {
        words: std::env::args().skip(1).collect(),
    };
    // Asked for, the usage is the answer (stdout, success); only a wrong command line is 2.
    let asked = |word: &String| matches!(word.as_str(), "--help" | "-h" | "help");
    if args.words.iter().any(asked) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
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
