use super::*;
use crate::frontend::Collector;
use aitier_protocol::responses::Event;
use aitier_protocol::tools::{FunctionCallDelta, ToolCallDelta};

fn req(v: serde_json::Value) -> ResponsesRequest {
    serde_json::from_value(v).expect("valid shape")
}

fn param_of(v: serde_json::Value) -> Option<String> {
    match Responses::decode(req(v.clone())) {
        Err(CoreError::InvalidRequest { param, .. }) => param,
        other => panic!("{v}: expected a 400, got {other:?}"),
    }
}

#[test]
fn refusals_name_their_parameter() {
    let cases = [
        (serde_json::json!({"model": "m", "input": []}), "input"),
        (
            serde_json::json!({"model": "m", "input": "x", "tools": [{"type": "web_search_preview"}]}),
            "tools[0].type",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}),
            "tools[0].type",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "bad name"}]}),
            "tools[0].name",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "f"}}),
            "tool_choice.name",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}),
            "text.format.name",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "temperature": 5}),
            "temperature",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            serde_json::json!({"model": "m", "input": "x", "truncation": "auto"}),
            "truncation",
        ),
    ];
    for (body, param) in cases {
        assert_eq!(param_of(body.clone()).as_deref(), Some(param), "{body}");
    }
}

#[test]
fn instructions_history_and_input_make_the_conversation() {
    let history = vec![
        items::normalised(&serde_json::from_value(serde_json::json!({"role": "user", "content": "hi"})).expect("an item")),
        serde_json::from_value(serde_json::json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]})).expect("an item"),
    ];
    let d = Responses::decode_with(
        req(serde_json::json!({"model": "m", "instructions": "be brief", "input": "and now?",
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}}})),
        history,
    )
    .expect("valid");
    let PromptInput::Chat(m) = &d.request.prompt else {
        panic!("chat")
    };
    let roles: Vec<_> = m.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::User]
    );
    assert_eq!(m[2].content, "hello");
    assert_eq!(
        d.encoder.input().len(),
        3,
        "instructions are not part of the stored input"
    );
    assert_eq!(
        d.request.constraint.as_ref().map(|c| c.param),
        Some("text.format")
    );
}

fn call_events() -> Vec<GenEvent> {
    let piece = |id: Option<&str>, name: Option<&str>, args: &str| GenEvent::ToolCall {
        index: 0,
        delta: ToolCallDelta {
            index: 0,
            id: id.map(str::to_string),
            kind: id.map(|_| "function".to_string()),
            function: Some(FunctionCallDelta {
                name: name.map(str::to_string),
                arguments: Some(args.to_string()),
            }),
        },
        tokens: 1,
    };
    vec![
        GenEvent::started(4),
        GenEvent::Delta {
            index: 0,
            text: "Let me look.".into(),
            logprobs: vec![],
            tokens: 3,
        },
        piece(Some("call_1"), Some("weather"), ""),
        piece(None, None, "{\"city\":"),
        piece(None, None, "\"Paris\"}"),
        GenEvent::Finished {
            index: 0,
            reason: FinishReason::ToolCalls,
        },
        GenEvent::done(Usage::new(4, 9, 0)),
    ]
}

#[test]
fn a_stream_opens_fills_and_closes_each_item_and_ends_with_what_respond_gives() {
    let d = Responses::decode(req(
        serde_json::json!({"model": "m", "input": "x", "stream": true,
        "tools": [{"type": "function", "name": "weather"}]}),
    ))
    .expect("valid");
    let mut enc = d.encoder;
    let whole = enc.clone();
    let mut collector = Collector::new(1);
    let mut events = Vec::new();
    let mut answer = None;
    for ev in call_events() {
        if let Some(a) = collector.observe(&ev) {
            answer = Some(a.expect("ok"));
        }
        events.extend(enc.encode(ev).into_iter().map(|p| match p {
            Payload::Chunk(c) => c,
            other => panic!("{other:?}"),
        }));
    }
    let names: Vec<_> = events.iter().map(|e| e.event.name()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let numbers: Vec<_> = events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    let Event::Completed { response: streamed } = &events.last().expect("events").event else {
        panic!("completed last")
    };
    assert_eq!(
        streamed.output[1].arguments.as_deref(),
        Some("{\"city\":\"Paris\"}")
    );
    assert_eq!(streamed.usage.as_ref().map(|u| u.output_tokens), Some(9));
    let mut whole = whole.respond(answer.expect("an answer"));
    whole.completed_at = streamed.completed_at;
    assert_eq!(
        &whole, streamed,
        "the stored response is the one the client saw"
    );
}

#[test]
fn running_out_of_tokens_is_incomplete() {
    let mut enc = Responses::decode(req(serde_json::json!({"model": "m", "input": "x"})))
        .expect("valid")
        .encoder;
    let mut last = Vec::new();
    for ev in [
        GenEvent::started(1),
        GenEvent::Finished {
            index: 0,
            reason: FinishReason::Length,
        },
        GenEvent::done(Usage::new(1, 1, 0)),
    ] {
        last = enc.encode(ev);
    }
    let Some(Payload::Chunk(StreamEvent {
        event: Event::Incomplete { response },
        ..
    })) = last.pop()
    else {
        panic!("incomplete")
    };
    assert_eq!(
        response.incomplete_details.map(|d| d.reason).as_deref(),
        Some("max_output_tokens")
    );
    assert_eq!(response.output.len(), 1, "an empty message, not no output");
}

#[test]
fn a_failure_midway_is_an_error_event_then_a_failed_response() {
    let mut enc = Responses::decode(req(
        serde_json::json!({"model": "m", "input": "x", "stream": true}),
    ))
    .expect("valid")
    .encoder;
    let mut seen = enc.encode(GenEvent::started(1));
    seen.extend(enc.encode_error(ErrorBody {
        error: aitier_protocol::ErrorDetail {
            message: "the upstream went away".into(),
            kind: "server_error".into(),
            param: None,
            code: Some("upstream_error".into()),
        },
    }));
    let events: Vec<_> = seen
        .into_iter()
        .map(|p| match p {
            Payload::Chunk(c) => c,
            other => panic!("{other:?}"),
        })
        .collect();
    let names: Vec<_> = events.iter().map(|e| e.event.name()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
    assert_eq!(events[3].sequence_number, 3);
    let Event::Failed { response } = &events[3].event else {
        panic!("failed")
    };
    assert_eq!(response.status, "failed");
    assert_eq!(
        response.error.as_ref().map(|e| e.code.as_str()),
        Some("upstream_error")
    );
}
