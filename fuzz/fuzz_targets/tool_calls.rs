//! A model's output read for tool calls as it streams, cut anywhere: never
//! a panic, and the pieces sent to the client always make sense: argument
//! fragments only for a call already started, calls numbered from 0.
#![no_main]
use aitier_engine::fuzzing::{read_tool_calls, CallPiece, ToolCallPiece};
use libfuzzer_sys::fuzz_target;

fn check(pieces: Vec<ToolCallPiece>) {
    let mut started = 0u32;
    for p in pieces {
        match p {
            ToolCallPiece::Call(CallPiece::Start { index, .. }) => {
                assert_eq!(index, started, "calls start in order");
                started += 1;
            }
            ToolCallPiece::Call(CallPiece::Arguments { index, .. }) => {
                assert!(
                    index < started,
                    "arguments of call {index} before it started"
                )
            }
            ToolCallPiece::Text(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let step = usize::from(cut % 9) + 1;
    let mut deltas = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        deltas.push(&text[start..end]);
        start = end;
    }
    check(read_tool_calls(&deltas));
    check(read_tool_calls(&[text]));
});
