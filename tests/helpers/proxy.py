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

    def __init__(self, upstream: int, password: str | None = None) -> None:
        self.upstream = upstream
        self.password = password  # the upstream Redis's (private instances have one)
        self.port = free_port()
        self.dropped = 0
        self._trigger: bytes | None = None
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self._closed = False
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        from brokers.urls import userinfo

        return f"redis://{userinfo(None, self.password)}127.0.0.1:{self.port}/0"

    def arm(self, trigger: bytes, *, then_refuse: bool = False) -> None:
        """Lose the reply to the first request containing ``trigger``; with ``then_refuse``,
        stop accepting connections at that moment too (the server looks gone for good)."""
        with self._lock:
            self._trigger = trigger
            self._then_refuse = then_refuse

    def close(self) -> None:
        self._closed = True
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
        except OSError:
            pass
        self._server.close()

    def cut_all(self, keep: tuple[socket.socket, ...] = ()) -> None:
        """Refuse new connections and close every open one (but ``keep``, whose reply is being
        lost): the server looks gone for good."""
        self.close()
        for sock in list(self._open):
            if sock not in keep:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self._open += [client, upstream]
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
                            if getattr(self, "_then_refuse", False):
                                self.cut_all(keep=(source, target))
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
                    s.shutdown(socket.SHUT_RDWR)  # close() alone waits for the other thread's recv()
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
