"""A FastPix webhook handler, as a web app already has one, that `forward`
delivers to: it verifies FastPix-Signature with FastPix's documented
algorithm, base64(HMAC-SHA256(base64-decoded secret, raw body)), and
deduplicates on FastPix-Event-Id. Python's standard library only.

    FORWARD_SECRET=<base64 secret> python examples/python/forward_receiver.py

- POST /webhooks/fastpix: 401 when the signature does not verify, 400 when
  the body is not JSON, else 200 and one JSON line on stdout
  {"event_id", "type", "attempt", "duplicate"};
- GET /healthz: 200;
- `--healthcheck` exits 0 when /healthz answers, 1 otherwise (for a
  container healthcheck).

PORT (default 8000) is where it listens.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))
PATH = "/webhooks/fastpix"


def secret_key():
    secret = os.environ.get("FORWARD_SECRET", "")
    if not secret:
        sys.exit("FORWARD_SECRET (the destination's base64 signing secret) is required")
    return base64.b64decode(secret)


def verify(key, body, signature):
    """FastPix's algorithm: base64(HMAC-SHA256(decoded secret, raw body))."""
    expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature or "")


class Handler(BaseHTTPRequestHandler):
    key = b""
    seen = set()

    def log_message(self, *args):
        pass

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self.answer(200, "ok")
        else:
            self.answer(404, "not found")

    def do_POST(self):
        if self.path != PATH:
            return self.answer(404, "not found")
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if not verify(self.key, body, self.headers.get("FastPix-Signature")):
            print("refused: bad signature", file=sys.stderr, flush=True)
            return self.answer(401, "bad signature")
        try:
            event = json.loads(body)
        except ValueError:
            return self.answer(400, "not JSON")
        event_id = self.headers.get("FastPix-Event-Id") or event.get("id")
        duplicate = event_id in self.seen
        self.seen.add(event_id)
        line = {
            "event_id": event_id,
            "type": event.get("type"),
            "attempt": self.headers.get("FastPix-Delivery-Attempt"),
            "duplicate": duplicate,
        }
        print(json.dumps(line), flush=True)
        self.answer(200, "ok")


def main():
    if "--healthcheck" in sys.argv[1:]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2) as r:
                sys.exit(0 if r.status == 200 else 1)
        except OSError:
            sys.exit(1)
    Handler.key = secret_key()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"listening on :{PORT}{PATH}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
