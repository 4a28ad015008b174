"""A plain ``kill`` (SIGTERM) of ``brokerbench`` stops everything it started, as Ctrl-C does:
its private brokers, its role and load processes, its network namespace (with its veth pair).

Each test starts the real command in a process group of its own, waits until what it starts is
running, sends SIGTERM to the command alone (not its group: a ``kill <pid>`` from a shell), and
checks within a deadline that the command exited and nothing it started remains. Whatever is
left when a test fails is killed and deleted by the test itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import psutil
import pytest

from brokers import netns

ROOT = Path(__file__).resolve().parents[2]
EXIT_DEADLINE_S = 45.0
GONE_DEADLINE_S = 15.0


def _descendants(pid: int) -> dict[int, tuple[float, str]]:
    """pid -> (start time, name) of every process below ``pid``."""
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for proc in found:
        try:
            out[proc.pid] = (proc.create_time(), proc.name())
        except psutil.NoSuchProcess:
            continue
    return out


def _still_running(seen: dict[int, tuple[float, str]]) -> list[str]:
    """The processes of ``seen`` still running (the same process: same start time; a zombie
    waiting for init to reap it does not count)."""
    left = []
    for pid, (created, name) in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {name}")
        except psutil.NoSuchProcess:
            continue
    return left


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def _kill_left(seen: dict[int, tuple[float, str]], folders: Sequence[Path] = ()) -> None:
    """After a failure: kill what still runs and delete the private brokers' folders."""
    for entry in _still_running(seen):
        try:
            os.kill(int(entry.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    for folder in folders:
        if folder.name.startswith("brokerbench-"):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """start(args): ``python -m benchmarks.commands.cli *args`` in a session of its own, its
    output in a file (``proc.output``: a pipe would stay open as long as any orphan holds it);
    at the end whatever it started that still runs is killed (the test failed then)."""
    started: list[tuple[subprocess.Popen, dict[int, tuple[float, str]]]] = []
    folders: list[Path] = []

    def start(*args: str) -> subprocess.Popen:
        log = tmp_path / f"command-{len(started)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.commands.cli", *args], cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        proc.output = lambda: log.read_text(errors="replace")  # type: ignore[attr-defined]
        started.append((proc, {}))
        return proc

    def remember(proc: subprocess.Popen) -> dict[int, tuple[float, str]]:
        for entry in started:
            if entry[0] is proc:
                entry[1].update(_descendants(proc.pid))
                found = _private_redis(entry[1])
                if found is not None and found[1] not in folders:
                    folders.append(found[1])
                return entry[1]
        raise KeyError(proc)

    start.remember = remember  # type: ignore[attr-defined]
    yield start
    for proc, seen in started:
        if proc.poll() is None:
            seen.update(_descendants(proc.pid))
            proc.kill()
        proc.wait(timeout=30)
        _kill_left(seen, folders)


def _terminate_and_check(proc: subprocess.Popen, seen: dict[int, tuple[float, str]]) -> str:
    """SIGTERM to the command alone; it must exit within the deadline, leaving nothing."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"brokerbench still running {EXIT_DEADLINE_S:.0f} s after SIGTERM") from None
    took = time.monotonic() - started
    output = proc.output()  # type: ignore[attr-defined]
    _wait(lambda: not _still_running(seen), GONE_DEADLINE_S,
          f"processes it started still running after it exited ({took:.1f} s): {_still_running(seen)}")
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, output[-2000:])
    return output


def _private_redis(seen: dict[int, tuple[float, str]]) -> tuple[int, Path] | None:
    for pid, (_, name) in seen.items():
        if name.startswith("redis-server"):
            try:
                return pid, Path(psutil.Process(pid).cwd())
            except psutil.Error:
                return None
    return None


def test_sigterm_stops_a_run_and_its_private_redis(command, tmp_path):
    """``brokerbench run`` at durability "disk" on Redis starts a private redis-server (the
    shared one keeps nothing on disk) and role processes; SIGTERM stops them all, and deletes
    the private instance's folder."""
    proc = command("run", "--broker", "redis", "--durability", "disk", "--profile", "user_variables_update",
                   "--mode", "open", "--rate", "50", "--duration-s", "120", "--warmup-s", "0", "--repeat", "1",
                   "--service-factor", "0", "--quiet", "--no-report", "--out", str(tmp_path / "out"))

    def running() -> bool:
        seen = command.remember(proc)
        pythons = [pid for pid, (_, name) in seen.items() if name.startswith("python")]
        return _private_redis(seen) is not None and len(pythons) >= 3  # fork server + producer + consumer

    _wait(lambda: proc.poll() is not None or running(), 90, "the private Redis and the roles running")
    assert proc.poll() is None, proc.output()[-2000:]
    seen = command.remember(proc)
    redis_pid, folder = _private_redis(seen) or (0, Path("?"))
    assert str(folder).startswith("/tmp") or folder.name.startswith("brokerbench-"), folder
    output = _terminate_and_check(proc, seen)
    assert "terminated (SIGTERM)" in output
    assert not psutil.pid_exists(redis_pid) or psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
    assert not folder.exists(), "the private instance's folder is deleted"


def hold_a_namespace(argv: list[str]) -> None:
    """A subcommand for the test below (registered in a child process only): a network
    namespace with a redis-server in it, then wait to be stopped."""
    from brokers.bullmq_redis.server import RedisInstance

    space = netns.Namespace(1).create()
    node = RedisInstance(namespace=space, host=space.address(0)).start()
    print(f"ready {space.name} {space.host_side} {node.folder} {node.pid}", flush=True)
    time.sleep(300)


NAMESPACE_COMMAND = ("import sys; from benchmarks.commands import cli; "
                     "cli.COMMANDS['hold-namespace'] = ('tests.harness.test_sigterm:hold_a_namespace', 'test'); "
                     "sys.argv = ['brokerbench', 'hold-namespace']; sys.exit(cli.main())")


@pytest.mark.skipif(netns.why_not() is not None, reason=f"no network namespace here: {netns.why_not()}")
def test_sigterm_removes_the_namespace_its_veth_and_what_runs_in_it(tmp_path):
    """Through the CLI's own entry: a command that made a namespace (as the replication scenario
    does) leaves no namespace, veth or process behind after SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-c", NAMESPACE_COMMAND], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    name = veth = folder = ""
    seen: dict[int, tuple[float, str]] = {}
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready "), line + proc.stdout.read()[-2000:]
        _, name, veth, folder, pid = line.split()
        seen = _descendants(proc.pid)
        assert int(pid) in seen and name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                            text=True).stdout
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=EXIT_DEADLINE_S)
        _wait(lambda: not _still_running(seen), GONE_DEADLINE_S, f"processes still running: {_still_running(seen)}")
        assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0, "veth left"
        assert not Path(folder).exists()
        assert proc.returncode == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if name:
            netns.Namespace(1, name=name, made=True).remove()  # a no-op when the command removed it
        _kill_left(seen, [Path(folder)] if folder else [])


def test_sigterm_stops_the_live_view_and_its_private_broker(command):
    """``brokerbench live`` (its own SIGTERM handler, started through the same CLI) still stops
    its private broker and every process it started."""
    proc = command("live", "--broker", "redis", "--port", "0")
    _wait(lambda: proc.poll() is not None or "open http" in proc.output(), 90, "the live view serving")
    assert proc.poll() is None, proc.output()[-2000:]
    seen = command.remember(proc)
    assert _private_redis(seen) is not None, seen
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=EXIT_DEADLINE_S)
    _wait(lambda: not _still_running(seen), GONE_DEADLINE_S, f"processes still running: {_still_running(seen)}")
    assert "stopped" in proc.output()
