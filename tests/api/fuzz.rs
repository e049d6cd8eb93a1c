//! The `delivery` fuzz target's checks (fuzz/src/lib.rs), run on stable by
//! the test command: the seed corpus, then a fixed number of inputs made
//! from it by a seeded mutator, the same on every run.

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use harness::{Input, check};

use crate::helpers::{SEED_TYPES, event_body};

/// Inputs run after the seeds; each one is a handful of checks.
const ITERATIONS: usize = 20_000;

/// splitmix64: deterministic, so a failure reproduces with the same count.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Types the mapping must survive: wildcards, separators, whitespace,
/// controls, non-ASCII, lengths and token counts at and past the limits.
fn hostile_types() -> Vec<String> {
    let mut types: Vec<String> = [
        "",
        ">",
        "*",
        "a.>",
        "*.*",
        ".",
        "..",
        "a..b",
        ".a",
        "a.",
        " ",
        "\t",
        "a b",
        "$JS.API.STREAM.DELETE.X",
        "_INBOX.x",
        "日本.語",
        "a\u{2028}b",
        "a\u{0}b",
        "a\r\nb",
        "\u{7f}",
        "\u{a0}",
        "é.ü",
        "🦀.🦀",
        "\\",
        "\"",
        "a\u{200b}b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    types.extend(SEED_TYPES.iter().map(|s| s.to_string()));
    types.push("a".repeat(256));
    types.push("a".repeat(257));
    types.push(["t"; 16].join("."));
    types.push(["t"; 17].join("."));
    types
}

/// Bodies that reach every branch of the envelope parser.
fn seed_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "   ",
        "{}",
        "[]",
        "null",
        "\"video.media.ready\"",
        r#"{"hello":"fastpix"}"#,
        r#"{"type":"a","type":"b"}"#,
        r#"{"type":"a","typ\u0065":"b"}"#,
        r#"{"type":5}"#,
        r#"{"type":null}"#,
        r#"{"type":"a\ud800"}"#,
        r#"{"type":"t","id":42,"object":"weird","workspace":[1],"data":null}"#,
        r#"{"environment":{"id":"env9"},"type":"video.live_stream.idle","webhookId":5}"#,
        r#"{"type":"t","id":"a\r\nb","object":{"id":{"deep":1}}}"#,
        r#"{"type":"a"} trailing"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    bodies.push(b"{\"type\":\"v\xff\"}".to_vec());
    bodies.push(
        format!(
            "{{\"type\":\"a\",\"d\":{}{}}}",
            "[".repeat(600),
            "]".repeat(600)
        )
        .into_bytes(),
    );
    bodies.push(format!("{{\"type\":\"a\",\"d\":{}}}", "{\"a\":".repeat(400)).into_bytes());
    bodies.extend(
        SEED_TYPES
            .iter()
            .map(|t| event_body(t, "seed").into_bytes()),
    );
    bodies
}

/// JSON-shaped bytes a mutation may insert.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\"type\"",
    b"\"type\":",
    b"null",
    b"0",
    b"-1e999",
    b"\xff",
    b"\xc3",
    b" ",
    b"\n",
];

fn mutate(rng: &mut Rng, body: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(body.len() + 1);
        match rng.below(5) {
            0 if !body.is_empty() => {
                let i = rng.below(body.len());
                body[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = rng.pick(TOKENS);
                body.splice(at..at, token.iter().copied());
            }
            2 if at < body.len() => {
                let end = (at + 1 + rng.below(16)).min(body.len());
                body.drain(at..end);
            }
            3 => body.truncate(at),
            _ => body.insert(at, rng.next() as u8),
        }
    }
}

fn input(rng: &mut Rng, bodies: &[Vec<u8>], types: &[String]) -> Input {
    let mut body = rng.pick(bodies).clone();
    if rng.below(4) > 0 {
        mutate(rng, &mut body);
    }
    let mut event_type = rng.pick(types).clone();
    if rng.below(2) == 0 {
        let c = char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('\u{fffd}');
        let at = rng.below(event_type.len() + 1);
        if event_type.is_char_boundary(at) {
            event_type.insert(at, c);
        }
    }
    let secret: Vec<u8> = (0..rng.below(80)).map(|_| rng.next() as u8).collect();
    let signature = match rng.below(3) {
        0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        1 => b"5tJAl2LA01EWBSeZM8aRWIZ7P7P6fihfnGIfvG5iT1M=".to_vec(),
        _ => Vec::new(),
    };
    Input {
        body,
        event_type,
        signature,
        secret,
        prefix: rng.next() as u8,
        flip_at: rng.next() as u16,
        flip_with: rng.next() as u8,
    }
}

#[test]
fn the_fuzz_target_holds_on_its_seed_corpus_and_20000_mutations() {
    let bodies = seed_bodies();
    let types = hostile_types();
    let mut rng = Rng(0x5EED_F457_9B1D_6E00);
    let mut runs = 0;
    // Every seed body and every seed type at least once, unmutated.
    for i in 0..bodies.len().max(types.len()) {
        check(&Input {
            body: bodies[i % bodies.len()].clone(),
            event_type: types[i % types.len()].clone(),
            signature: Vec::new(),
            secret: b"k".to_vec(),
            prefix: i as u8,
            flip_at: 0,
            flip_with: 1,
        });
        runs += 1;
    }
    for _ in 0..ITERATIONS {
        check(&input(&mut rng, &bodies, &types));
        runs += 1;
    }
    // Structured inputs straight from bytes, as libFuzzer would build them.
    for _ in 0..ITERATIONS / 10 {
        let bytes: Vec<u8> = (0..rng.below(512)).map(|_| rng.next() as u8).collect();
        let mut u = arbitrary::Unstructured::new(&bytes);
        if let Ok(i) = <Input as arbitrary::Arbitrary>::arbitrary(&mut u) {
            check(&i);
            runs += 1;
        }
    }
    assert!(runs > ITERATIONS, "{runs}");
}
