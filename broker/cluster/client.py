"""Send one request to a cluster's supervisor and return its parsed response."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from broker.cluster.layout import Layout


class NotRunning(Exception):
    """No supervisor listens on the cluster's control socket."""


def request(data_dir: Path, op: str, timeout: float = 60.0, **params: Any) -> dict:
    """Send `{"op": op, **params}` and return the response, e.g. {"ok": true, ...}.

    A failed op is a response with "ok": false, "error" and "kind" ("usage" for a bad
    request, "failed" otherwise); only a missing or dead supervisor raises (NotRunning,
    or OSError/TimeoutError when it stops answering).
    """
    path = Layout(Path(data_dir)).socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(str(data_dir)) from None
        sock.sendall(json.dumps({"op": op, **params}).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline()
    if not line:
        raise ConnectionError("the supervisor closed the connection without answering")
    return json.loads(line)
