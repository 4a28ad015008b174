"""``brokerbench live``: both brokers side by side in a browser while load runs, with faults on
buttons. Starts PRIVATE Redis and RabbitMQ instances (killing them harms no one) unless
``--shared``; serves the page on 127.0.0.1 unless ``--host``; stops every load process and
private broker it started on exit (Ctrl-C or SIGTERM).

It prints two URLs, each with its own random token (every request needs one): the teacher's,
which may press the buttons, and a read-only one for students (the page without buttons).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import webbrowser
from typing import Any

from brokers import registry

from .lab import Lab


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brokerbench live", description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", action="store_true",
                   help="use the brokers brokers.provision finds instead of private ones; the buttons that kill "
                        "or reconfigure a broker are then disabled (default: private brokers)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback accepts any Host name, so only the printed "
                        "tokens guard it (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--broker", action="append", choices=registry.kinds(),
                   help=f"broker kinds, repeat for several (default: {' and '.join(registry.compared_kinds())})")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="run a server's side with this client's producer and workers instead of our adapter, "
                        "e.g. bullmq-node or amqplib-node (see `brokerbench clients`); repeat for both servers")
    p.add_argument("--open", action="store_true", help="open the page in the default browser (default: print the URL)")
    return p


def side_clients(names: list[str], kinds: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """``--client`` values as kind -> client: each known, installed, and speaking to a server
    shown, one per server."""
    from brokers import clients

    chosen: dict[str, str] = {}
    for name in names:
        try:
            client = clients.get(name)
            client.check_available()
        except (ValueError, clients.ClientUnavailable) as exc:
            parser.error(str(exc))
        if client.server not in kinds:
            parser.error(f"{name} speaks to {client.server}, which this view does not show")
        if client.server in chosen:
            parser.error(f"one client per server: {chosen[client.server]} and {name} both speak to {client.server}")
        chosen[client.server] = name
    return chosen


def urls(host: str, port: int, lab: Lab) -> tuple[str, str]:
    """The teacher's URL (may act) and the students' read-only URL, each with its token."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    base = f"http://{name}:{port}/?token="
    return base + lab.token, base + lab.read_token


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from .app import build_app

    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = side_clients(args.client, args.broker or registry.compared_kinds(), parser)
    loopback = args.host in ("127.0.0.1", "localhost", "::1", "[::1]")
    print("brokerbench live: starting " + ("the found brokers" if args.shared else "private brokers") + "…",
          flush=True)
    lab = Lab(args.broker, shared=args.shared, clients=chosen)
    stop = threading.Event()

    def on_term(*_: Any) -> None:   # SIGTERM: shut down like Ctrl-C
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        lab.start()
        for side in lab.sides.values():
            where = "shared" if side.shared else "private"
            print(f"  {side.label}: {where} broker, {side.profile.name}", flush=True)
        hosts = None if loopback else ["*"]   # beyond loopback only the tokens guard it
        app = build_app(lab, hosts=hosts)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)

        def announce() -> None:
            while not server.started and not stop.is_set():
                stop.wait(0.05)
            if stop.is_set():
                return
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else args.port
            teacher, students = urls(args.host, port, lab)
            print(f"brokerbench live: open {teacher}  (the teacher's link: it presses the buttons; Ctrl-C stops "
                  "it and every broker and process it started)", flush=True)
            print(f"brokerbench live: students (read-only, no buttons): {students}", flush=True)
            if args.open:
                webbrowser.open(teacher)

        threading.Thread(target=announce, daemon=True).start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("brokerbench live: stopping load processes and brokers…", flush=True)
        lab.close()
        print("brokerbench live: stopped", flush=True)
    sys.stdout.flush()
