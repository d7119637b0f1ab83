//! A clustered app to measure a follower catching up through an InstallSnapshot
//! (`benches/snapshot-catchup.sh` drives it): `Item { id, name }` at `/api/items` plus
//! `POST /api/bulk/{count}/{bytes}`, one command creating `count` items with names of `bytes`
//! bytes, so a large state is written in a few requests. A snapshot is taken every
//! `SNAPSHOT_EVERY_EVENTS` events (no log-tail rule), so after the last bulk the log tail is
//! short and a catching-up follower costs the leader the snapshot, not a long tail.
//!
//!   snapshot_catchup serve --node-id 1 --port 8081 --peer-port 9081 --data d1 \
//!       --cluster 1@127.0.0.1:9081,2@127.0.0.1:9082,3@127.0.0.1:9083 --cluster-secret s

use lithair::app::App;
use lithair::engine::EngineOptions;
use lithair::prelude::*;

/// Events between two snapshots.
const SNAPSHOT_EVERY_EVENTS: u64 = 10_000;

/// An item; `POST /api/bulk/{count}/{bytes}` creates many at once.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(path = "/api/items")]
struct Item {
    /// Assigned by the sequencer.
    #[db(primary_key)]
    id: u64,
    /// Name.
    name: String,
}

fn main() -> std::process::ExitCode {
    App::new("snapshot-catchup")
        .model::<Item>()
        .engine_options(EngineOptions {
            snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
            ..EngineOptions::default()
        })
        .command(
            "/api/bulk/{count}/{bytes}",
            201,
            "Create many items at once",
            |tx, _: &(), params| {
                let count: u64 = params.get("count")?;
                let bytes: usize = params.get("bytes")?;
                for _ in 0..count {
                    tx.create(Item {
                        id: 0,
                        name: "x".repeat(bytes),
                    })?;
                }
                Ok(count)
            },
        )
        .run()
}
