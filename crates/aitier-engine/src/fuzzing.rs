//! Entry points for the fuzz targets (`fuzz/`), which reach code that is
//! otherwise private. Not an API.
pub use crate::toolcall::{CallPiece, Piece as ToolCallPiece};

/// Streams `deltas` through one choice's tool-call reader.
pub fn read_tool_calls(deltas: &[&str]) -> Vec<ToolCallPiece> {
    let mut envelope = crate::toolcall::Envelope::default();
    deltas.iter().flat_map(|d| envelope.push(d)).collect()
}
