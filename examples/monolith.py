"""A Python app that embeds the tier: its own route (`POST /ask`) is
answered by the tier in this process, with no network hop, from threads
that keep serving while the engine works (calls release the GIL).

    make test          # or, in your venv: maturin develop -m bindings/python/Cargo.toml
    .venv/bin/python examples/monolith.py [aitier.toml]
    curl -s localhost:3000/ask -d '{"question": "What is Rust?"}'

The configuration file is the one `aitier serve --config` takes; without
one, the embedded default models. `ASK_ADDR` (default 127.0.0.1:3000) is
where it listens; `AITIER_API_KEY`, the key its calls are checked against
when the tier's database has keys.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aitier

MODEL = os.environ.get("ASK_MODEL", "smollm2-135m-instruct")


def make_handler(tier: aitier.Tier):
    class Ask(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path != "/ask":
                return self.reply(404, {"error": "no such route"})
            try:
                question = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))["question"]
            except (ValueError, KeyError, TypeError):
                return self.reply(400, {"error": 'send {"question": "..."}'})
            try:
                answer = tier.chat.completions.create(
                    model=MODEL,
                    messages=[
                        {"role": "system", "content": "Answer in one short sentence."},
                        {"role": "user", "content": question},
                    ],
                    max_tokens=64,
                )
            except aitier.APIError as e:
                # The tier's refusal, passed on with its status (a 429 stays a 429).
                return self.reply(e.status_code or 502, {"error": str(e)})
            self.reply(200, {"answer": answer.choices[0].message.content, "tokens": answer.usage.completion_tokens})

        def reply(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Ask


def main():
    config = sys.argv[1] if len(sys.argv) > 1 else None
    host, port = os.environ.get("ASK_ADDR", "127.0.0.1:3000").rsplit(":", 1)
    with aitier.Tier(config, api_key=os.environ.get("AITIER_API_KEY")) as tier:
        server = ThreadingHTTPServer((host, int(port)), make_handler(tier))
        print(f"app listening on http://{host}:{server.server_port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
