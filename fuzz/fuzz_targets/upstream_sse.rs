//! An upstream's stream body, cut into chunks anywhere: the SSE parser must
//! find the same payloads however the bytes arrive, and the decoder must
//! turn any payload into events or an error, never a panic.
#![no_main]
use aitier_protocol::sse::SseParser;
use aitier_upstream::wire::{Decoder, Endpoint};
use libfuzzer_sys::fuzz_target;

fn payloads(body: &[u8], cut: usize) -> Vec<String> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    for chunk in body.chunks(cut.max(1)) {
        out.extend(parser.push(chunk));
    }
    out.extend(parser.finish());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, body)) = data.split_first() else {
        return;
    };
    let whole = payloads(body, body.len());
    assert_eq!(
        whole,
        payloads(body, usize::from(shape % 7) + 1),
        "cutting changed the payloads"
    );
    let endpoint = if shape & 0x80 == 0 {
        Endpoint::Chat
    } else {
        Endpoint::Completions
    };
    let mut decoder = Decoder::new(endpoint, usize::from(shape % 3) + 1, 5);
    for p in whole {
        if decoder.decode(&p).is_err() || decoder.done {
            break;
        }
    }
});
