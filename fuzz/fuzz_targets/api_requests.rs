//! A request body as a client sends it, to each API: parsed as the server
//! parses it, then decoded (validated and turned into the common request)
//! by the API's front-end. Either may refuse it; neither may panic.
#![no_main]
use aitier_core::frontend::chat::Chat;
use aitier_core::frontend::completions::Completions;
use aitier_core::frontend::messages::Messages;
use aitier_core::frontend::responses::Responses;
use aitier_core::frontend::{embeddings, Frontend};
use libfuzzer_sys::fuzz_target;

fn decode<F: Frontend>(body: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<F::Request>(body) {
        let _ = F::decode(req);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((api, body)) = data.split_first() else {
        return;
    };
    match api % 5 {
        0 => decode::<Chat>(body),
        1 => decode::<Completions>(body),
        2 => decode::<Messages>(body),
        3 => decode::<Responses>(body),
        _ => {
            if let Ok(req) = serde_json::from_slice(body) {
                let _ = embeddings::decode(req);
            }
        }
    }
});
