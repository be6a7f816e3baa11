"""A TCP proxy on loopback that a test can blackhole: bytes stop flowing in both
directions while every socket stays open, as when a network path drops packets
silently. Nothing is refused or reset, so only keepalives can tell."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import cast

from tests.services import free_port


class BlackholeProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blackholed = threading.Event()
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BlackholeProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            cast(socket.socket, key.fileobj).close()  # only sockets are registered
        self._selector.close()

    def _accept(self) -> None:
        client, _address = self._listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        for sock in (client, upstream):
            # Blocking: recv runs only when the selector says readable, and a
            # sendall that waits for the peer's window is the backpressure.
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._selector.register(client, selectors.EVENT_READ, upstream)
        self._selector.register(upstream, selectors.EVENT_READ, client)
        self.connections += 1

    def _close(self, sock: socket.socket, peer: socket.socket) -> None:
        for each in (sock, peer):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            each.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _events in self._selector.select(timeout=0.1):
                if key.data is None:
                    self._accept()
                    continue
                # Only sockets are registered (the selector types file-likes).
                sock, peer = cast(socket.socket, key.fileobj), key.data
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._close(sock, peer)
                    continue
                if self.blackholed.is_set():
                    continue  # dropped on the floor, nobody is told
                try:
                    peer.sendall(data)
                except OSError:
                    self._close(sock, peer)
