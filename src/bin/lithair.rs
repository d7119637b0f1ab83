//! The `lithair` command: log-level tools over a data directory (`lithair::engine::tools`).
//!
//! Owns: argument parsing and exit codes only. Must not: modify files or take the data
//! directory lock. Apps get the same tools, plus typed `replay` and `snapshot`, through
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

    fn number(&self, name: &str) -> Result<Option<u64>, String> {
        match self.value(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} expects a number, got {text:?}")),
        }
    }

    fn data_dir(&self) -> Result<PathBuf, String> {
        self.value("--data")
            .map(PathBuf::from)
            .ok_or_else(|| "missing --data DIR".to_string())
    }
}

fn run(args: &Args) -> Option<Result<(), String>> {
    let command: Vec<&str> = args.words.iter().take(2).map(String::as_str).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = match command.as_slice() {
        ["replay", ..] => args
            .data_dir()
            .and_then(|dir| tools::replay_stream(&dir, &mut out)),
        ["log", "verify", ..] => args
            .data_dir()
            .and_then(|dir| tools::log_verify(&dir, &mut out)),
        ["log", "inspect", ..] => args.data_dir().and_then(|dir| {
            let (from, to) = (args.number("--from")?, args.number("--to")?);
            tools::log_inspect(&dir, from, to, args.value("--type"), &mut out)
        }),
        ["log", "stats", ..] => args
            .data_dir()
            .and_then(|dir| tools::log_stats(&dir, &mut out)),
        ["snapshot", ..] => args
            .data_dir()
            .and_then(|dir| tools::snapshot_list(&dir, &mut out)),
        _ => return None,
    };
    Some(result.and_then(|()| std::io::Write::flush(&mut out).map_err(|e| e.to_string())))
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
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(message)) => {
            eprintln!("lithair: {message}");
            ExitCode::FAILURE
        }
    }
}
