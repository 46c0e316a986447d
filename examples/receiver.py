"""A minimal writer-webhook receiver: verify, drop repeats, hand the request on.

    .venv/bin/python examples/receiver.py --port 9000 --secret "$SEISMO_RECEIVER_SECRET"

(seismo's virtualenv: the receiver imports seismo's reference verifier)

then point seismo at it (``SEISMO_WEBHOOK_URLS='["http://127.0.0.1:9000/hook"]'`` and the
same secret in ``SEISMO_WEBHOOK_SECRETS='["..."]'``). Each accepted "dossier update
requested" body is printed as one JSON line on stdout; a real writer would queue it.

Replies: 200 accepted, 200 ``duplicate`` for an Idempotency-Key already accepted (seismo
delivers at least once), 401 for a missing/bad/stale signature (seismo does not retry a 4xx,
the alert goes to its dead-letter topic), 400 for a body that is not JSON.
Standard library only, besides seismo's reference verifier.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from seismo.verify import (
    DEFAULT_TOLERANCE,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    verify_signature,
)


def make_server(
    host: str, port: int, secrets: list[str], tolerance: float = DEFAULT_TOLERANCE
) -> ThreadingHTTPServer:
    seen: set[str] = set()  # a real receiver keeps these as long as the tolerance window
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def reply(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                verify_signature(
                    body, self.headers.get(SIGNATURE_HEADER), secrets, tolerance=tolerance
                )
            except SignatureError as exc:
                self.reply(401, str(exc))
                return
            try:
                request: Any = json.loads(body)
            except ValueError:
                self.reply(400, "body is not JSON")
                return
            key = self.headers.get(IDEMPOTENCY_HEADER) or str(request.get("request_id"))
            with lock:
                duplicate = key in seen
                seen.add(key)
            if duplicate:
                self.reply(200, "duplicate")
                return
            print(json.dumps(request), flush=True)
            self.reply(200, "accepted")

        def log_message(self, format: str, *args: Any) -> None:
            print(f"receiver: {format % args}", file=sys.stderr)

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Verify and print seismo writer webhooks.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument(
        "--secret", action="append", required=True, help="signing secret (repeat to rotate)"
    )
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="seconds")
    args = p.parse_args(argv)
    server = make_server(args.host, args.port, args.secret, args.tolerance)
    print(f"receiver: listening on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
