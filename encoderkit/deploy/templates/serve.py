#!/usr/bin/env python3
"""Serve an encoderkit web bundle on 127.0.0.1 (Python's standard library only).

    python3 serve.py [--port 8000] [--no-isolation]

Adds the headers that make the page cross-origin isolated (COOP same-origin + COEP require-corp:
SharedArrayBuffer, hence onnxruntime-web's wasm threads; without them it runs on one thread) and
serves .mjs as JavaScript and .wasm as application/wasm. It listens on the loopback interface
only; to host the bundle elsewhere, use any static web server with the same headers (README.md).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".html": "text/html; charset=utf-8", ".onnx": "application/octet-stream",
         ".data": "application/octet-stream", ".py": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8"}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the isolation headers; quiet unless ``verbose``."""

    isolation = True
    verbose = False
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self) -> None:
        if self.isolation:
            for key, value in ISOLATION_HEADERS.items():
                self.send_header(key, value)
        self.send_header("Cache-Control", "no-cache")  # revalidate: a re-packaged bundle is seen at once
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.verbose:
            super().log_message(format, *args)


def make_server(root: Path = HERE, port: int = 8000, isolation: bool = True,
                verbose: bool = False) -> http.server.ThreadingHTTPServer:
    """A server for ``root`` bound to 127.0.0.1:``port`` (0: any free port); not started."""
    handler = type("BundleHandler", (Handler,), {"isolation": isolation, "verbose": verbose})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    return server


def serve(root: Path = HERE, port: int = 8000, isolation: bool = True, say=print, verbose: bool = True) -> None:
    """Serve ``root`` until Ctrl-C."""
    server = make_server(Path(root), port, isolation, verbose)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    say(f"serving {root} at {url} ("
        + ("cross-origin isolated: wasm threads available" if isolation else "not isolated: one wasm thread")
        + "); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--no-isolation", action="store_true", help="leave out COOP/COEP (one wasm thread)")
    p.add_argument("--dir", type=Path, default=HERE, help="the bundle (default: this file's folder)")
    a = p.parse_args(argv)
    try:
        serve(a.dir, a.port, not a.no_isolation)
    except OSError as e:  # port in use, no permission
        print(f"error: cannot listen on 127.0.0.1:{a.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
