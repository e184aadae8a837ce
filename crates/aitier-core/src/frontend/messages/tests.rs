use super::*;
use aitier_protocol::tools::{FunctionCallDelta, ToolCallDelta};

fn req(v: serde_json::Value) -> MessagesRequest {
    serde_json::from_value(v).expect("valid shape")
}

fn param_of(v: serde_json::Value) -> Option<String> {
    match Messages::decode(req(v.clone())) {
        Err(CoreError::InvalidRequest { param, .. }) => param,
        other => panic!("{v}: expected a 400, got {other:?}"),
    }
}

fn hi() -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": "hi"}])
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"model": "m", "max_tokens": 8, "messages": hi()});
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

#[test]
fn refusals_name_their_parameter() {
    let cases = [
        (
            serde_json::json!({"model": "m", "messages": hi()}),
            "max_tokens",
        ),
        (with(serde_json::json!({"messages": []})), "messages"),
        (
            with(serde_json::json!({"messages": [{"role": "system", "content": "x"}]})),
            "messages[0].role",
        ),
        (with(serde_json::json!({"temperature": 1.5})), "temperature"),
        (
            with(serde_json::json!({"stop_sequences": ["a", "b", "c", "d", "e"]})),
            "stop_sequences",
        ),
        (
            with(
                serde_json::json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            ),
            "tools[0].type",
        ),
        (
            with(serde_json::json!({"tools": [{"name": "f", "input_schema": 3}]})),
            "tools[0].input_schema",
        ),
        (
            with(
                serde_json::json!({"tool_choice": {"type": "tool", "name": "nope"}, "tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
            ),
            "tool_choice.name",
        ),
        (
            with(
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            ),
            "messages[0].content[0].type",
        ),
        (
            with(
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {}}]}]}),
            ),
            "messages[0].content[0].type",
        ),
        (
            with(serde_json::json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})),
            "thinking",
        ),
    ];
    for (body, param) in cases {
        assert_eq!(param_of(body.clone()).as_deref(), Some(param), "{body}");
    }
}

#[test]
fn tool_use_and_tool_result_blocks_become_calls_and_tool_turns() {
    let d = Messages::decode(req(with(serde_json::json!({
        "system": [{"type": "text", "text": "be brief"}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "and tomorrow?"}]}
        ]
    }))))
    .expect("valid");
    let PromptInput::Chat(m) = &d.request.prompt else {
        panic!("chat")
    };
    let roles: Vec<_> = m.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(m[2].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(m[3].tool_call_id.as_deref(), Some("toolu_1"));
    let tools = d.request.tools.expect("tools");
    assert_eq!(
        (tools.choice, tools.parallel),
        (crate::request::ToolChoice::Required, false)
    );
}

#[test]
fn a_stream_is_anthropics_event_sequence_and_names_the_stop_sequence() {
    let mut enc = Messages::decode(req(with(
        serde_json::json!({"stream": true, "stop_sequences": ["", "END"]}),
    )))
    .expect("valid")
    .encoder;
    let piece = |id: Option<&str>, args: &str| GenEvent::ToolCall {
        index: 0,
        delta: ToolCallDelta {
            index: 0,
            id: id.map(str::to_string),
            kind: None,
            function: Some(FunctionCallDelta {
                name: id.map(|_| "weather".to_string()),
                arguments: Some(args.into()),
            }),
        },
        tokens: 1,
    };
    let mut names = Vec::new();
    let mut last = None;
    for ev in [
        GenEvent::started(5),
        GenEvent::Delta {
            index: 0,
            text: "Hi".into(),
            logprobs: vec![],
            tokens: 1,
        },
        piece(Some("toolu_1"), ""),
        piece(None, "{\"city\":\"Paris\"}"),
        GenEvent::Finished {
            index: 0,
            reason: FinishReason::StopSequence(0),
        },
        GenEvent::done(aitier_protocol::Usage::new(5, 4, 2)),
    ] {
        for p in enc.encode(ev) {
            let Payload::Chunk(c) = p else {
                panic!("chunk")
            };
            names.push(c.name());
            last = Some(c.clone());
            if let StreamEvent::MessageDelta { delta, usage } = c {
                assert_eq!(delta.stop_reason.as_deref(), Some("stop_sequence"));
                assert_eq!(
                    delta.stop_sequence.as_deref(),
                    Some("END"),
                    "empty stops are dropped first"
                );
                assert_eq!(
                    (
                        usage.input_tokens,
                        usage.cache_read_input_tokens,
                        usage.output_tokens
                    ),
                    (3, 2, 4)
                );
            }
        }
    }
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(last, Some(StreamEvent::MessageStop));
}

#[test]
fn a_failure_midway_is_an_anthropic_error_event() {
    let mut enc = Messages::decode(req(with(serde_json::json!({"stream": true}))))
        .expect("valid")
        .encoder;
    let out = enc.encode_error(ErrorBody {
        error: aitier_protocol::ErrorDetail {
            message: "the upstream went away".into(),
            kind: "server_error".into(),
            param: None,
            code: Some("upstream_error".into()),
        },
    });
    let [Payload::Chunk(StreamEvent::Error { error })] = out.as_slice() else {
        panic!("one error event: {out:?}")
    };
    assert_eq!(error.kind, "api_error");
    assert_eq!(error.message, "the upstream went away");
}
