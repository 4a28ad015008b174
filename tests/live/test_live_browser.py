"""``brokerbench live`` as a class uses it: started as a command on private brokers, driven by
a real headless Chromium (Debian's ``chromium``; Playwright's Python client, no browser
download), then stopped with Ctrl-C, which must leave no broker or load process running.

The browser is the machine's: ``.ci/run`` installs Debian's chromium and sets
BROKERBENCH_REQUIRE_BROWSER=1, so CI fails (never skips) without one. Elsewhere the browser
test is skipped with the reason when no Chromium is installed. BROKERBENCH_SCREENSHOT=PATH
also writes the screenshot there (how reports/live/live-view.png was made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

CHROMIUM = next((p for p in (os.environ.get("BROKERBENCH_CHROMIUM"), shutil.which("chromium"),
                              shutil.which("chromium-browser")) if p), None)


@pytest.fixture(scope="module")
def live():
    """``brokerbench live --port 0`` in its own process: (process, the teacher's URL); the
    students' read-only URL is ``process.students``."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.commands.cli", "live", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[str] = []
    deadline = time.monotonic() + 180
    url = students = None
    while time.monotonic() < deadline and (url is None or students is None):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"open (http://\S+)", line)
        url = found.group(1) if found else url
        found = re.search(r"students \(read-only, no buttons\): (http://\S+)", line)
        students = found.group(1) if found else students
    if url is None or students is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        pytest.fail("brokerbench live did not print its two URLs:\n" + "".join(lines))
    # Keep reading its output (workers' warnings go there too): a full pipe would block them.
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    proc.lines = lines
    proc.students = students
    yield proc, url
    if proc.poll() is None:   # a test failed before Ctrl-C: stop it the same way (SIGKILL would orphan its brokers)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_class_starts_load_kills_a_worker_and_sees_the_jobs_come_back(live, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("BROKERBENCH_REQUIRE_BROWSER"):
            pytest.fail("no Chromium: install Debian's chromium package (.ci/run does)")
        pytest.skip("no Chromium installed (Debian: apt install chromium)")
    from playwright.sync_api import sync_playwright

    proc, url = live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(url)
            page.wait_for_selector(".side[data-kind=redis] .counts tr", timeout=30_000)
            page.fill("#rate", "30")
            page.select_option("#profile", "heavy_workflow_execution")
            page.fill("#lock_s", "1")
            page.click("#start")

            def count(kind: str, key: str) -> int:
                text = page.inner_text(f".side[data-kind={kind}] tr[data-key={key}] td.v")
                return int(text.replace(",", "")) if text.strip("–") else 0

            for kind in ("redis", "rabbitmq"):
                page.wait_for_function(
                    f"() => Number((document.querySelector('.side[data-kind={kind}] tr[data-key=ran] td.v') || "
                    "{}).textContent?.replace(/,/g, '')) > 30", timeout=60_000)
            before = {k: count(k, "redelivered") for k in ("redis", "rabbitmq")}
            page.click("#kill-worker")
            for kind in ("redis", "rabbitmq"):
                page.wait_for_selector(f".side[data-kind={kind}] .markers li:has-text('jobs back')", timeout=30_000)
            for kind in ("redis", "rabbitmq"):  # the counters are sampled twice a second: they follow
                page.wait_for_function(
                    f"() => Number((document.querySelector('.side[data-kind={kind}] tr[data-key=redelivered] td.v') "
                    f"|| {{}}).textContent?.replace(/,/g, '')) > {before[kind]}", timeout=10_000)
            after = {k: count(k, "redelivered") for k in ("redis", "rabbitmq")}
            assert all(after[k] > before[k] for k in after), (before, after)
            for kind in ("redis", "rabbitmq"):
                assert page.locator(f".side[data-kind={kind}] svg.chart g.marker").count() >= 2  # start, kill, back
            shot = tmp_path / "live-view.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            if os.environ.get("BROKERBENCH_SCREENSHOT"):
                shutil.copy(shot, os.environ["BROKERBENCH_SCREENSHOT"])
            assert not [m for m in console if "Content Security Policy" in m], console

            students = browser.new_page(viewport={"width": 1500, "height": 1100})
            students.goto(proc.students)
            students.wait_for_selector(".side[data-kind=rabbitmq] .counts tr[data-key=in_doubt]", timeout=30_000)
            assert students.locator("button").count() == 0, "the read-only page has no buttons"
            assert students.inner_text("#role") == "read-only view"
        finally:
            browser.close()


def action(base: str, token: str, body: bytes) -> int:
    request = urllib.request.Request(base + "api/action", method="POST", headers={
        "X-Token": token, "Content-Type": "application/json"}, data=body)
    try:
        return urllib.request.urlopen(request, timeout=60).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_every_request_needs_a_token_and_the_students_link_only_reads(live):
    proc, url = live
    base, token = url.split("?token=")
    read_token = proc.students.split("?token=")[1]
    assert proc.students.startswith(base) and read_token != token
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base, timeout=10)
    assert refused.value.code == 403 and refused.value.headers["X-Frame-Options"] == "DENY"
    page = urllib.request.urlopen(proc.students, timeout=10)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "<button" not in page.read().decode()
    assert action(base, read_token, b'{"action": "stop_load"}') == 403
    state = json.loads(urllib.request.urlopen(f"{base}api/state?token={read_token}", timeout=10).read())
    assert set(state["sides"]) == {"redis", "rabbitmq"}


def test_ctrl_c_leaves_no_broker_or_load_process_running(live):
    proc, url = live
    base = url.split("?token=")[0]
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    token = re.search(r'data-token="([^"]+)"', page).group(1)
    assert action(base, token, b'{"action": "start_load", "rate": 50}') == 200
    state = json.loads(urllib.request.urlopen(f"{base}api/state?token={token}", timeout=10).read())
    pids = state["pids"]
    assert len(pids) >= 2 + 2 * 3, f"two private brokers and each one's producer and workers: {pids}"
    assert all(psutil.pid_exists(pid) for pid in pids)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    time.sleep(0.5)   # the reader thread takes the last lines
    out = "".join(proc.lines)
    assert "stopped" in out, out[-2000:]
    time.sleep(1)
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after Ctrl-C: {alive}"
