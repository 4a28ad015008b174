"""A TCP proxy on loopback that loses one reply on purpose: the request reached the server and
was carried out, its answer never comes back (what a socket timeout or a dropped connection
looks like to a client). For tests of calls that must not act twice."""

from __future__ import annotations

import socket
import threading

from brokers.instances import free_port


class ReplyDropProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream``. Once :meth:`arm` is given a byte
    string, the first connection whose request contains it gets that request carried out but
    loses the reply: the proxy closes the connection instead of forwarding the answer."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.dropped = 0
        self._trigger: bytes | None = None
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, trigger: bytes) -> None:
        with self._lock:
            self._trigger = trigger

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            state = {"drop": False}
            threading.Thread(target=self._forward, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._forward, args=(upstream, client, state, False), daemon=True).start()

    def _forward(self, source: socket.socket, target: socket.socket, state: dict[str, bool], request: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if request:
                    with self._lock:
                        if self._trigger is not None and self._trigger in data:
                            self._trigger = None
                            state["drop"] = True
                    target.sendall(data)
                elif state["drop"]:
                    self.dropped += 1  # the server answered: the client never hears it
                    break
                else:
                    target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.close()
                except OSError:
                    pass
