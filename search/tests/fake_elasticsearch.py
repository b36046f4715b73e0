"""A tiny in-process HTTP stand-in for the few Elasticsearch endpoints the search app calls.

Not Elasticsearch: it stores what it is sent and answers in Elasticsearch's wire format, so
tests can check what the real client sends (bulk ids, index names, alias swaps, search
bodies) end to end over HTTP. Nothing here says the queries behave right on a live cluster;
those tests are marked ``elasticsearch`` and need ``ELASTICSEARCH_URL``.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CONTENT_TYPE = "application/vnd.elasticsearch+json; compatible-with=9"


class FakeElasticsearch:
    def __init__(self):
        self.indices: dict[str, dict] = {}  # name -> {_id: source}
        self.aliases: dict[str, set[str]] = {}  # alias -> index names
        self.search_bodies: list[dict] = []
        self.search_hits: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        # (status, body) every request is answered with instead, while set (answer_with).
        self.failure: tuple[int, dict] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeElasticsearch":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer_with(self, status: int, error_type: str = "fake_failure") -> None:
        """From now on, answer every request with ``status`` and an error body in
        Elasticsearch's shape (503 unavailable, 429 rejected, 400 a bad request...)."""
        reason = f"{error_type} for the test"
        error = {"root_cause": [{"type": error_type, "reason": reason}], "type": error_type}
        self.failure = (status, {"error": error | {"reason": reason}, "status": status})

    def documents(self, alias_or_index: str) -> dict:
        names = self.aliases.get(alias_or_index) or {alias_or_index}
        docs = {}
        for name in names:
            docs.update(self.indices.get(name, {}))
        return docs

    # -- HTTP --------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, payload=None) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _failed(self) -> bool:
                """Answered with the failure set by ``answer_with``, if any."""
                if fake.failure is None:
                    return False
                fake.requests.append((self.command, self.path))
                self._body()  # read, so the connection can be reused
                self._send(*fake.failure)
                return True

            def do_HEAD(self):
                if self._failed():
                    return
                parts = urlparse(self.path).path.strip("/").split("/")
                fake.requests.append(("HEAD", self.path))
                if parts[0] == "":
                    self._send(200)  # ping
                elif parts[0] == "_alias":
                    self._send(200 if fake.aliases.get(parts[1]) else 404)
                else:
                    self._send(200 if parts[0] in fake.indices else 404)

            def do_GET(self):
                if self._failed():
                    return
                parts = urlparse(self.path).path.strip("/").split("/")
                fake.requests.append(("GET", self.path))
                if parts[0] == "_alias":
                    names = fake.aliases.get(parts[1], set())
                    self._send(200, {n: {"aliases": {parts[1]: {}}} for n in names})
                else:
                    self._send(200, {"version": {"number": "9.0.0"}, "tagline": "fake"})

            def do_PUT(self):
                if self._failed():
                    return
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                fake.requests.append(("PUT", self.path))
                body = self._body()
                if parts[-1] == "_bulk":  # the 9.x client sends bulk as PUT
                    require_alias = parse_qs(url.query).get("require_alias") == ["true"]
                    self._send(200, fake._bulk(body, require_alias))
                    return
                if len(parts) == 3 and parts[1] == "_alias":
                    fake.aliases.setdefault(parts[2], set()).add(parts[0])
                else:
                    fake.indices.setdefault(parts[0], {})
                self._send(200, {"acknowledged": True})

            def do_DELETE(self):
                if self._failed():
                    return
                parts = urlparse(self.path).path.strip("/").split("/")
                fake.requests.append(("DELETE", self.path))
                for name in parts[0].split(","):
                    fake.indices.pop(name, None)
                self._send(200, {"acknowledged": True})

            def do_POST(self):
                if self._failed():
                    return
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                fake.requests.append(("POST", self.path))
                body = self._body()
                if parts[-1] == "_bulk":
                    require_alias = parse_qs(url.query).get("require_alias") == ["true"]
                    self._send(200, fake._bulk(body, require_alias))
                elif parts[-1] == "_search":
                    fake.search_bodies.append(json.loads(body))
                    self._send(
                        200, {"took": 1, "timed_out": False, "hits": {"hits": fake.search_hits}}
                    )
                elif parts[-1] == "_aliases":
                    for action in json.loads(body)["actions"]:
                        ((verb, spec),) = action.items()
                        members = fake.aliases.setdefault(spec["alias"], set())
                        (members.add if verb == "add" else members.discard)(spec["index"])
                    self._send(200, {"acknowledged": True})
                else:
                    self._send(404, {"error": "not faked", "status": 404})

        return Handler

    def _bulk(self, body: bytes, require_alias: bool) -> dict:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        items = []
        for meta_line, source in zip(lines[::2], lines[1::2], strict=True):
            ((op, meta),) = meta_line.items()
            target = meta["_index"]
            if require_alias and target not in self.aliases:
                items.append(
                    {
                        op: {
                            "_id": meta["_id"],
                            "status": 404,
                            "error": {"type": "index_not_found_exception"},
                        }
                    }
                )
                continue
            names = self.aliases.get(target) or {target}
            for name in names:
                self.indices.setdefault(name, {})[meta["_id"]] = source
            items.append({op: {"_id": meta["_id"], "_index": target, "status": 201}})
        return {
            "took": 1,
            "errors": any(i[next(iter(i))]["status"] >= 300 for i in items),
            "items": items,
        }
