"""A loopback TCP proxy that injects faults between the app and a real service.

Modes: ``pass`` (forward), ``refuse`` (stop listening: connection refused), ``reset`` (accept,
then close at once), ``blackhole`` (accept and read, never answer). Switching mode also
cuts the connections already open, so clients see the outage immediately. ``stall`` keeps
them open instead and forwards nothing more, while the kernel still acknowledges what is
sent (a server whose I/O froze); back to ``pass``, what was held is forwarded.
"""

import contextlib
import socket
import threading
import time

MODES = ("pass", "refuse", "reset", "blackhole", "stall")


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, listen_port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self._requested_port = listen_port
        self.port = 0
        self.mode = "pass"
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._listen(self._requested_port)
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._close_listener()
        self._cut_all()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            previous, self.mode = self.mode, mode
        if mode != previous and "stall" not in (mode, previous):
            self._cut_all()
        if mode == "refuse":
            self._close_listener()
        elif self._listener is None:
            self._listen(self.port)

    # -- internals -------------------------------------------------------------------------
    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _cut_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            mode = self.mode
            if mode == "reset":
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                client.close()
                continue
            self._track(client)
            if mode in ("blackhole", "stall"):
                threading.Thread(target=self._drain, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.mode == "stall" and not self._stopped.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
