//! Chat templates rendering hostile conversations: whatever the messages
//! say (control-token markup, the renderer's own sentinels, template
//! syntax), the rendering cut into template text and client text must put
//! back together into the plain rendering, and the client's text must add
//! no control markup to the template's part.
#![no_main]
use aitier_core::{Message, Role};
use aitier_engine::ChatTemplate;
use libfuzzer_sys::fuzz_target;

const TEMPLATES: [(&str, &str, &str, &str); 2] = [
    (
        include_str!("../../examples/templates/chatml-tools.jinja"),
        "",
        "<|im_end|>",
        "<|im_start|>",
    ),
    (
        include_str!("../../examples/templates/gemma3.jinja"),
        "<bos>",
        "<eos>",
        "<start_of_turn>",
    ),
];

fn messages(data: &[u8]) -> Vec<Message> {
    data.split(|&b| b == 0xff)
        .filter_map(|m| m.split_first())
        .map(|(&role, text)| {
            let role = match role % 4 {
                0 => Role::System,
                1 => Role::User,
                2 => Role::Assistant,
                _ => Role::Tool,
            };
            Message::new(role, String::from_utf8_lossy(text))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (source, bos, eos, marker) = TEMPLATES[usize::from(which % 2)];
    let template = ChatTemplate::new(source, bos, eos).expect("the committed templates parse");
    let hostile = messages(rest);
    let Ok(segments) = template.render_segments(&hostile, None) else {
        return;
    };
    let plain = template
        .render(&hostile, None)
        .expect("rendered once already");
    let joined: String = segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined, plain, "the segments are the rendering");
    let benign: Vec<Message> = hostile.iter().map(|m| Message::new(m.role, "x")).collect();
    if let Ok(reference) = template.render(&benign, None) {
        let ours: usize = segments
            .iter()
            .filter(|s| !s.from_client)
            .map(|s| s.text.matches(marker).count())
            .sum();
        assert_eq!(
            ours,
            reference.matches(marker).count(),
            "client text changed the template's markup"
        );
    }
});
