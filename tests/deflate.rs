//! DEFLATE and gzip against the `gzip` tool: files it compressed (stored, fixed and dynamic
//! blocks) decode to the originals, and (when the binary is installed) it accepts ours.

use lithair::crypto::deflate::{self, DeflateError};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const LIMIT: usize = 1 << 26;

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/deflate")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn decodes_files_made_by_gzip() {
    let sample = data("sample.txt");
    assert_eq!(
        deflate::gunzip(&data("sample.txt.9.gz"), LIMIT).expect("-9"),
        sample
    );
    assert_eq!(
        deflate::gunzip(&data("sample.txt.1.gz"), LIMIT).expect("-1"),
        sample
    );
    assert_eq!(
        deflate::gunzip(&data("random.bin.gz"), LIMIT).expect("stored"),
        data("random.bin")
    );
    assert_eq!(
        deflate::gunzip(&data("one.txt.gz"), LIMIT).expect("one"),
        b"a"
    );
    assert_eq!(
        deflate::gunzip(&data("empty.gz"), LIMIT).expect("empty"),
        b""
    );
    // Concatenated members decode as one stream (RFC 1952 §2.2).
    let two = [data("one.txt.gz"), data("one.txt.gz")].concat();
    assert_eq!(deflate::gunzip(&two, LIMIT).expect("two members"), b"aa");
}

#[test]
fn every_truncation_of_a_gzip_file_is_an_error() {
    let whole = data("sample.txt.9.gz");
    for cut in 0..whole.len() {
        assert!(
            deflate::gunzip(&whole[..cut], LIMIT).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
}

#[test]
fn output_limit_holds_against_a_bomb() {
    let bomb = deflate::gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    assert_eq!(
        deflate::gunzip(&bomb, 1 << 20),
        Err(DeflateError::OutputTooLarge)
    );
}

fn gzip_tool(args: &[&str], input: Vec<u8>) -> Option<Vec<u8>> {
    let mut child = Command::new("gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to gzip");
    assert!(out.status.success(), "gzip {args:?} failed");
    Some(out.stdout)
}

#[test]
fn gzip_tool_accepts_ours() {
    let mut inputs = vec![
        data("sample.txt"),
        data("random.bin"),
        Vec::new(),
        vec![b'x'; 300_000],
    ];
    inputs.push(
        (0..100_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect(),
    );
    for input in inputs {
        let ours = deflate::gzip(&input);
        match gzip_tool(&["-dc"], ours) {
            Some(back) => assert_eq!(back, input),
            None => return, // no gzip binary on this machine
        }
    }
}

#[test]
fn ours_is_within_reach_of_gzip_9() {
    let sample = data("sample.txt");
    let ours = deflate::gzip(&sample).len();
    let theirs = data("sample.txt.9.gz").len();
    // Not a speed or exact-size assertion: a broken matcher or Huffman stage would be far off.
    assert!(
        ours * 100 <= theirs * 115,
        "ours {ours} bytes vs gzip -9 {theirs}"
    );
}

proptest::proptest! {
    #[test]
    fn prop_round_trip_through_our_inflate(input in proptest::collection::vec(proptest::num::u8::ANY, 0..5000), repeat in 1usize..4) {
        let input = input.repeat(repeat);
        let raw = deflate::compress_raw(&input);
        proptest::prop_assert_eq!(deflate::inflate_raw(&raw, LIMIT).expect("inflate"), input.clone());
        proptest::prop_assert_eq!(deflate::gunzip(&deflate::gzip(&input), LIMIT).expect("gunzip"), input);
    }
}
