"""A fault-injecting OpenAI-compatible chat-completions server for tests (http.server in a thread, 127.0.0.1).

Each POST to .../chat/completions gets the next scripted reply for its key (by default the first
image URL of the request, so each pair has its own script whatever the order of concurrent requests),
then `default`. A reply is a `Reply` or a function of the request ({"key", "body", "headers"}) that
returns one. Every request is recorded in `requests` (header names in lower case).

    with FaultServer({key_a: [rate_limited(1), ok("...")], key_b: [server_error()]}) as server:
        backend = OpenAIBackend(model="m", base_url=server.url, ...)
"""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping, Sequence


@dataclass
class Reply:
    """One scripted reply: status, body (bytes, or JSON-encoded), headers, and a delay before answering."""

    status: int = 200
    body: object = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


def completion(content, *, finish_reason: str = "stop", usage: dict | None = None, model: str = "fault") -> dict:
    return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}],
            "usage": usage if usage is not None else {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


def ok(text: str, **kwargs) -> Reply:
    return Reply(200, completion(text, **kwargs))


def empty() -> Reply:
    return Reply(200, completion(""))


def rate_limited(retry_after: str | int = 1) -> Reply:
    return Reply(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": str(retry_after)})


def server_error(status: int = 500) -> Reply:
    return Reply(status, {"error": {"message": "internal error"}})


def slow(seconds: float, then: Reply | None = None) -> Reply:
    """`then` (a valid reply by default), answered after `seconds`: a timeout for a client waiting less."""
    reply = then or ok("too late")
    return Reply(reply.status, reply.body, reply.headers, seconds)


def garbage() -> Reply:
    return Reply(200, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})


def first_image_url(body: Mapping) -> str:
    """The default request key: the url of the first image part of the first message ("" if none)."""
    for part in body.get("messages", [{}])[0].get("content", []):
        if isinstance(part, dict) and part.get("type") == "image_url":
            return part["image_url"]["url"]
    return ""


def prompt_text(body: Mapping) -> str:
    """The text parts of the first message, joined (an LLM judge's prompt)."""
    content = body.get("messages", [{}])[0].get("content", [])
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


class FaultServer:
    """OpenAI-compatible endpoint answering from a script; `url` is the base_url (…/v1)."""

    def __init__(self, script: Mapping[str, Sequence[Reply | Callable[[dict], Reply]]] | None = None,
                 default: Reply | Callable[[dict], Reply] | None = None, key: Callable[[dict], str] = first_image_url):
        self.queues = defaultdict(deque, {k: deque(v) for k, v in (script or {}).items()})
        self.default = default or ok("Move the red square to the left.")
        self.key = key
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FaultServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, key: str | None = None) -> int:
        """Requests received (for one key, or all)."""
        with self.lock:
            return sum(key is None or r["key"] == key for r in self.requests)

    def _next(self, body: dict, headers: dict) -> Reply:
        request = {"key": self.key(body), "body": body, "headers": headers}
        with self.lock:
            self.requests.append(request)
            queue = self.queues[request["key"]]
            reply = queue.popleft() if queue else self.default
        return reply(request) if callable(reply) else reply

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.endswith("/chat/completions"):
                    return self._send(Reply(404, {"error": {"message": f"no route {self.path}"}}))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(Reply(400, {"error": {"message": "body is not JSON"}}))
                reply = server._next(body, {k.lower(): v for k, v in self.headers.items()})
                if reply.delay:
                    time.sleep(reply.delay)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        return Handler
