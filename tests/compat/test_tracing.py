"""OpenTelemetry traces: spans reach a real OTLP/HTTP receiver (started
here, decoding the protobuf with the `opentelemetry-proto` package). A
gateway aitier relays to an upstream aitier; the client's `traceparent`
makes the gateway's request span its child, the gateway passes its own
span on, the upstream's request span is that span's child, and the
upstream's engine spans (queue wait, prefill, decode) are children of its
request span."""

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import MODEL, spawn_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.spans: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["content-length"]))
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        spans = []
        for rs in req.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "attrs": {a.key: a.value for a in s.attributes},
                            "service": resource.get("service.name"),
                        }
                    )
        with self.server.lock:
            self.server.spans.extend(spans)
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    r = Receiver()
    t = threading.Thread(target=r.serve_forever, daemon=True)
    t.start()
    yield r
    r.shutdown()


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    # Exiting sends the spans still batched.
    assert proc.wait(timeout=120) == 0


def test_spans_cross_the_gateway_and_reach_the_receiver(receiver, tmp_path):
    upstream, up_url = spawn_server(
        tmp_path / "upstream.log",
        ["--data-dir", str(tmp_path / "up"), "--otlp-endpoint", receiver.url, "--drain-grace", "0s"],
    )
    try:
        spec = f"relay={up_url}/v1#{MODEL}"
        gateway, gw_url = spawn_server(
            tmp_path / "gateway.log",
            ["--data-dir", str(tmp_path / "gw"), "--upstream", spec, "--otlp-endpoint", receiver.url, "--drain-grace", "0s"],
        )
        try:
            r = httpx.post(
                f"{gw_url}/v1/chat/completions",
                headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01", "x-request-id": "trace-probe-1"},
                json={"model": "relay", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                timeout=120,
            )
            assert r.status_code == 200, r.text
        finally:
            stop(gateway)
    finally:
        stop(upstream)

    with receiver.lock:
        spans = [s for s in receiver.spans if s["trace_id"] == TRACE_ID]
    assert spans, f"no span of the caller's trace among {len(receiver.spans)} received"
    assert all(s["service"] == "aitier" for s in spans)
    requests = [s for s in spans if s["name"] == "POST /v1/chat/completions"]
    gateway_span = next(s for s in requests if s["parent"] == CALLER_SPAN)
    assert gateway_span["attrs"]["request_id"].string_value == "trace-probe-1"
    assert gateway_span["attrs"]["model"].string_value == "relay"
    assert gateway_span["attrs"]["provider"].string_value == "relay"
    # The upstream's request span is a child of the gateway's.
    upstream_span = next(s for s in requests if s["parent"] == gateway_span["span_id"])
    assert upstream_span["attrs"]["model"].string_value == MODEL
    children = {s["name"]: s for s in spans if s["parent"] == upstream_span["span_id"]}
    assert {"queue_wait", "prefill", "decode"} <= set(children), sorted(children)
    assert children["prefill"]["attrs"]["prompt_tokens"].int_value > 0
