"""Loopback sources for the ``wsvad watch`` tests: a video remuxed to MPEG-TS (the packets of the
file, not re-encoded, so the decoded frames are the file's), served over TCP or HTTP on
127.0.0.1, or written to a file that grows while it is read. Nothing leaves the machine.

A server hands out one payload per connection, paced in chunks like a live encoder, and stops
listening when the payloads are used up (so a reconnect then fails, as with a camera that went
away). A payload cut short is a stream dropped mid-way.
"""
from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["ts_bytes", "TcpStream", "HttpStream", "GrowingFile"]

CHUNK = 188 * 10  # ten MPEG-TS packets


def ts_bytes(video: str | Path) -> bytes:
    """The video stream of ``video`` remuxed to MPEG-TS in memory (stream copy: same frames)."""
    import av

    buf = io.BytesIO()
    with av.open(str(video)) as inp, av.open(buf, "w", format="mpegts") as out:
        src = inp.streams.video[0]
        dst = out.add_stream_from_template(src)
        for packet in inp.demux(src):
            if packet.dts is None:  # the demuxer's flush packet
                continue
            packet.stream = dst
            out.mux(packet)
    return buf.getvalue()


def _chunks(data: bytes, chunk: int):
    for i in range(0, len(data), chunk):
        yield data[i:i + chunk]


class TcpStream:
    """``tcp://127.0.0.1:PORT``: connection k gets ``payloads[k]``, ``pace`` seconds per chunk;
    after the last, or when ``hold`` is set, the connection stays open (sending nothing more)
    until :meth:`close`."""

    def __init__(self, payloads: list[bytes], pace: float = 0.002, chunk: int = CHUNK, hold: bool = False):
        self.payloads, self.pace, self.chunk, self.hold = list(payloads), pace, chunk, hold
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.connections = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="loopback-tcp")
        self._thread.start()

    def _serve(self) -> None:
        try:
            for payload in self.payloads:
                conn, _ = self._srv.accept()
                self.connections += 1
                with conn:
                    try:
                        for part in _chunks(payload, self.chunk):
                            conn.sendall(part)
                            time.sleep(self.pace)
                        if self.hold:
                            self._done.wait()
                    except OSError:  # the client went away
                        pass
        except OSError:  # closed while waiting for a connection
            pass
        finally:
            self._srv.close()  # no more payloads: a reconnect is refused

    def close(self) -> None:
        self._done.set()
        self._srv.close()
        self._thread.join(timeout=2)


class HttpStream:
    """``http://127.0.0.1:PORT/live.ts``: every GET gets ``payload`` paced, without a length (a
    live stream, read until the server closes)."""

    def __init__(self, payload: bytes, pace: float = 0.002, chunk: int = CHUNK):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for part in _chunks(payload, chunk):
                        self.wfile.write(part)
                        self.wfile.flush()
                        time.sleep(pace)
                except OSError:
                    pass
                outer.requests += 1

            def log_message(self, *args):  # quiet
                pass

        self.requests = 0
        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}/live.ts"
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True, name="loopback-http")
        self._thread.start()

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


class GrowingFile:
    """Writes ``data`` to ``path`` in chunks, ``pace`` seconds apart, as a recorder would: the
    first chunk is there on return, the rest arrives while the file is read."""

    def __init__(self, path: str | Path, data: bytes, pace: float = 0.02, chunk: int = CHUNK):
        self.path = Path(path)
        parts = list(_chunks(data, chunk))
        self.path.write_bytes(parts[0])
        self.appends = 0

        def grow():
            with open(self.path, "ab") as f:
                for part in parts[1:]:
                    time.sleep(pace)
                    f.write(part)
                    f.flush()
                    self.appends += 1

        self._thread = threading.Thread(target=grow, daemon=True, name="loopback-file")
        self._thread.start()

    def join(self) -> None:
        self._thread.join()
