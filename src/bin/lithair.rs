//! The `lithair` command: log-level tools over a data directory (`lithair::engine::tools`).
//!
//! Owns: argument parsing and exit codes only (the parsing is `app::cli`'s, shared with every
//! app). Must not: modify files or take the data directory lock, except `log repair --apply`
//! (which takes the lock, and cuts only what it reported) and `log backup` (which writes only
//! into its new destination). Apps get the same tools, plus typed `replay` and `snapshot`,
//! through `App::run`.

use lithair::app::cli;
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
                                            --apply, cut the log there, or accept a deleted
                                            newest segment (stop the server first)
  lithair log backup --data DIR --to NEW_DIR
                                            copy a single node's data beside the running
                                            server, then check the copy
  lithair snapshot --data DIR               list snapshots and check their checksums
                                            (taking one needs the app's types: `APP snapshot`)";

/// The `--data` directory, which every command of the tool needs: unlike an app, the tool
/// has no name to default it from.
fn required_data(data: Option<String>) -> Result<PathBuf, Failure> {
    match data {
        Some(dir) if !dir.trim().is_empty() => Ok(PathBuf::from(dir)),
        Some(_) => Err(Failure::Usage("`--data` needs a directory".to_string())),
        None => Err(Failure::Usage("missing --data DIR".to_string())),
    }
}

/// `replay` and `snapshot` take `--data DIR` alone.
fn data_only(words: &[String], command: &str) -> Result<PathBuf, Failure> {
    let flags = cli::Flags::parse(words, command, &[], &["data"]).map_err(usage)?;
    required_data(flags.value("data").map(str::to_string))
}

fn usage(error: cli::CliError) -> Failure {
    Failure::Usage(error.message)
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
        ["replay", ..] => tools::replay_stream(&data_only(&words[1..], "replay")?, &mut out),
        ["log", ..] => {
            // The same parser as every app's `log` subcommand, so both refuse the same lines.
            let (data, action) = cli::parse_log(&words[1..]).map_err(usage)?;
            lithair::app::tools::log_command(&required_data(data)?, &action, &mut out)
        }
        ["snapshot", ..] => tools::snapshot_list(&data_only(&words[1..], "snapshot")?, &mut out),
        [other, ..] if !other.starts_with('-') => {
            return Err(Failure::Usage(format!("unknown command `{other}`")))
        }
        // No command at all (nothing, or flags alone): the usage says what comes first.
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
