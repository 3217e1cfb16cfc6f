"""What every test directory shares."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

#: Tests on a real engine that fail are run once more: the engine has races of
#: its own (docs/reliability.md: the replaced updater's pause written over a
#: requested rollback), and a 2-core machine shared by three test workers
#: delays the overlay network now and then. A test that fails twice fails;
#: every rerun is listed in the summary (pytest-rerunfailures).
ENGINE_DIRS = ("integration", "platform")
RERUNS = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in ENGINE_DIRS for part in item.path.parts[-3:-1]):
            item.add_marker(pytest.mark.flaky(reruns=RERUNS))


@pytest.fixture
def error_ratio() -> Iterator[str]:
    """A JSON endpoint on loopback answering ``{"ratio": 0.0}``: an analysis
    of it passes."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"ratio": 0.0}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ratio"
    server.shutdown()
