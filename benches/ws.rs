//! WebSocket protocol core throughput (no sockets): a server `Connection` receiving masked
//! client frames (parse, unmask, reassemble, UTF-8 validation) and writing echo frames.
//!
//! `cargo bench --bench ws`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lithair::ws::{Config, Connection, Event, Message};

/// Masked client frames carrying `messages`.
fn client_wire(messages: &[Message]) -> Vec<u8> {
    let mut client = Connection::new(Config::CLIENT, 0);
    for message in messages {
        client.send(message).expect("open");
    }
    client.take_output()
}

/// Feeds `wire` in 64 KiB reads (the reactor's read size) and echoes every message.
fn receive_and_echo(wire: &[u8]) -> usize {
    let mut server = Connection::new(Config::SERVER, 0);
    let mut messages = 0;
    for read in wire.chunks(64 * 1024) {
        server.receive(read);
        while let Some(event) = server.poll_event() {
            if let Event::Message(message) = event {
                server.send(&message).expect("open");
                messages += 1;
            }
        }
        let pending = server.output_len();
        server.consume_output(pending);
    }
    messages
}

fn bench_receive(c: &mut Criterion) {
    let cases = [
        ("binary 1 MiB", vec![Message::Binary(vec![0x5A; 1 << 20])]),
        ("text ascii 1 MiB", vec![Message::Text("a".repeat(1 << 20))]),
        (
            "text multibyte 1 MiB",
            vec![Message::Text("κόσμε€".repeat((1 << 20) / 15))],
        ),
        (
            "1000 text messages of 32 bytes",
            vec![Message::Text("x".repeat(32)); 1000],
        ),
    ];
    let mut group = c.benchmark_group("ws receive+echo");
    for (name, messages) in cases {
        let wire = client_wire(&messages);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(|| (), |()| receive_and_echo(&wire), BatchSize::SmallInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_receive);
criterion_main!(benches);
