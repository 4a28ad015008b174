"""Writes the five teaching notebooks (their cells live here, so they can be reviewed as code).

    python notebooks/make_notebooks.py           # write the .ipynb files (no outputs)
    python notebooks/make_notebooks.py --run     # and execute them here, keeping the outputs

Every notebook reads two environment variables:
  BROKERBENCH_NOTEBOOK_PROFILE  "full" (default) or "small" (what CI uses: short live parts)
  BROKERBENCH_RESULTS           results folder to read (default: the committed reference run)
and notebooks 02, 03 and 05 one more, the one switch for their live cells:
  BROKERBENCH_NOTEBOOK_LIVE     "1" runs their live cells on the full profile too (the small
                                profile always runs them). 02's runs on the brokers the pre-flight
                                cell finds (Docker will do); 03's and 05's start private brokers,
                                so they also need redis-server and rabbitmq-server installed
                                here, and say so when the switch is on and either is missing.
Set it where Jupyter starts (`BROKERBENCH_NOTEBOOK_LIVE=1 jupyter lab notebooks/`), or with
`%env BROKERBENCH_NOTEBOOK_LIVE=1` in the notebook before its live cell.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''%matplotlib inline
import os, sys, time, json
from pathlib import Path
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
PROFILE = os.environ.get("BROKERBENCH_NOTEBOOK_PROFILE", "full")
RESULTS = Path(os.environ.get("BROKERBENCH_RESULTS", ROOT / "reports" / "reference" / "results"))
SMALL = PROFILE == "small"
import logging
logging.getLogger("pika").setLevel(logging.CRITICAL)
print("profile:", PROFILE, "| results:", RESULTS.relative_to(ROOT) if RESULTS.is_relative_to(ROOT) else RESULTS)'''


# Pre-flight, in every notebook with live cells: what is here, what is missing, what stands in.
PREFLIGHT = '''from brokers import registry
from brokers.provision import BrokerNotFound, find
FOUND, MISSING = {}, {}
for kind in ("redis", "rabbitmq"):
    try:
        FOUND[kind] = find(kind)
        print(f"{kind:9s} found ({FOUND[kind].source}): {FOUND[kind].describe()['url']}")
    except BrokerNotFound as exc:
        MISSING[kind] = str(exc)
        print(f"{kind:9s} MISSING: {exc}")
servers = {k: registry.get(k).server_class() for k in ("redis", "rabbitmq")}
NO_BINARY = [cls.program if cls is not None else k for k, cls in servers.items() if cls is None or not cls.binary()]
PRIVATE_OK = not NO_BINARY
print("private brokers (fault and replication cells):", "can be started here" if PRIVATE_OK else
      "cannot be started here: redis-server and rabbitmq-server must both be installed locally (a broker in "
      "Docker is not enough: these cells start and kill brokers of their own); missing: " + ", ".join(NO_BINARY))
LIVE_OK = not MISSING
if not LIVE_OK:
    print("Live cells will say they are skipped; the recorded results in", RESULTS, "stand in for them",
          "(reports/reference/report.md has every figure).")'''

# The one switch for the live cells of notebooks 02, 03 and 05 (see the module docstring).
LIVE_SWITCH = '''LIVE_ASKED = os.environ.get("BROKERBENCH_NOTEBOOK_LIVE") == "1"
LIVE_WANTED = SMALL or LIVE_ASKED   # CI runs the live cells on the small profile
print("live cells:", "on (BROKERBENCH_NOTEBOOK_LIVE=1)" if LIVE_ASKED else "on (small profile)" if SMALL else
      "off: start Jupyter with BROKERBENCH_NOTEBOOK_LIVE=1 (or run %env BROKERBENCH_NOTEBOOK_LIVE=1) to run them")'''


def private_live(recorded: str) -> str:
    """The start of a live cell that starts private brokers: LIVE, and why not when it is off."""
    return LIVE_SWITCH + f'''
LIVE = LIVE_WANTED and PRIVATE_OK
if LIVE_WANTED and not PRIVATE_OK:
    print(("BROKERBENCH_NOTEBOOK_LIVE=1 is set, but this" if LIVE_ASKED else "This") + " live cell is skipped: it "
          "starts private brokers, and this machine lacks " + " and ".join(NO_BINARY) + " (brokers in Docker "
          "are not enough; see the pre-flight cell). {recorded}")
elif not LIVE:
    print("{recorded}")'''


def concepts() -> list:
    return [
        new_markdown_cell("""# 01 · Concepts, live on both brokers

This notebook runs against live brokers (found by `brokers.provision`: your `REDIS_URL` /
`AMQP_URL`, localhost, local binaries, or Docker). Each concept is shown on **both** a
BullMQ-style queue on Redis and RabbitMQ, side by side, with what to look at: the Redis keys of
the queue, and RabbitMQ's counters of ready and unacknowledged messages.

Order for a class: work queue → acks and redelivery → prefetch vs concurrency → retries →
delays → priorities → routing → durability → a confirm is not a delivery.

To let a class *watch* these happen, run `brokerbench live` in a terminal and open the URL it
prints: both brokers side by side in a browser while load runs, with a worker kill, a broker
kill, poison, delayed and urgent jobs on buttons, and each consequence marked on a timeline.
The 10-minute class script is `docs/teaching/live_class.md`."""),
        new_code_cell(SETUP),
        new_code_cell(PREFLIGHT + '''
if not LIVE_OK:
    raise SystemExit("This notebook shows each concept live and needs both brokers: see above for what is "
                     "missing and how to fix it. Recorded counterparts: reports/reference/report.md.")'''),
        new_code_cell('''from brokers.provision import find, open_broker
from brokers.contract import JobOptions, JobSpec, Backoff
import uuid
tag = uuid.uuid4().hex[:6]
redis_q = open_broker("redis", queue=f"lesson-{tag}")
rabbit_q = open_broker("rabbitmq", queue=f"lesson-{tag}", max_priority=10)
BOTH = {"redis": redis_q, "rabbitmq": rabbit_q}
for name, b in BOTH.items():
    print(f"{name:9s}", find(name).describe()["url"], "->", b.describe().get("version"))'''),
        new_markdown_cell("""## 1. A work queue

A producer publishes jobs; they wait in the broker until a worker takes them.
* **Redis (BullMQ's layout):** each job is a hash `bull:<queue>:<id>`; its id is pushed on the
  list `bull:<queue>:wait`, and the sorted set `bull:<queue>:marker` wakes idle workers.
* **RabbitMQ:** each job is a message in a durable queue; `ready` counts what waits."""),
        new_code_cell('''for name, b in BOTH.items():
    with b.producer() as p:
        p.publish_many([JobSpec("user_variables_update", {"userId": i, "step": "cart"}) for i in range(3)])
    print(name, b.stats())
keys = redis_q.lane_keys["default"]
print("\\nRedis wait list:", redis_q.client.lrange(keys.wait, 0, -1))
first = redis_q.client.lrange(keys.wait, -1, -1)[0].decode()
print(f"job hash bull:{redis_q.queue}:{first} ->", redis_q.job_hash(first))
print("\\nRabbitMQ ready messages in", rabbit_q.topology.lane_queue("default"), "=",
      rabbit_q.queue_depth(rabbit_q.topology.lane_queue("default")))'''),
        new_code_cell('''def show(job):
    return {"ran": job.id[:8], "data": job.data}
for name, b in BOTH.items():
    report = b.worker(show).run(max_jobs=3, timeout=20)
    print(f"{name:9s} {report}  ->  stats after: {b.stats()}")'''),
        new_markdown_cell("""## 2. Acks and redelivery after a crash

A worker that takes a job and dies must not lose it.
* **Redis:** taking a job moves its id from `wait` to `active` and sets `<id>:lock` with a TTL that a
  live worker renews. If the worker dies, the lock expires; the *stalled check* finds a job in
  `active` without a lock and puts it back (its `stc` counter rises).
* **RabbitMQ:** a delivered message stays *unacknowledged*; when the consumer's connection
  closes, RabbitMQ puts it back at once, marked `redelivered`.

Below, a "worker" takes one job and vanishes without finishing it."""),
        new_code_cell('''# Redis: take a job with a 1 s lock, as a worker would, then "die" (never renew, never finish).
# A queue of its own: the stalled check runs at most once per stalled interval per queue (a
# key, stalled-check, throttles it), and the workers above used the default 30 s interval.
crash_q = open_broker("redis", queue=f"lesson-crash-{tag}")
ckeys = crash_q.lane_keys["default"]
with crash_q.producer() as p:
    job_id = p.publish("heavy_workflow_execution", {"projectId": "proj123"})
crash_q.scripts.call("moveToActive", ckeys, int(time.time() * 1000), [1, "dead-worker:1", 1000, "dead-worker"])
print("active:", crash_q.client.lrange(ckeys.active, 0, -1), "| lock:", crash_q.client.get(ckeys.lock(job_id)),
      "| ttl ms:", crash_q.client.pttl(ckeys.lock(job_id)))
time.sleep(1.2)
print("after 1.2 s the lock is gone:", crash_q.client.get(ckeys.lock(job_id)))
runs = []
crash_q.worker(lambda job: runs.append((job.id, job.redelivered, job.deliveries)), lock_duration_ms=1000,
               stalled_interval_ms=300).run(max_jobs=1, timeout=10)
print("run again by a live worker (id, redelivered, deliveries):", runs)
crash_q.remove(); crash_q.close()'''),
        new_code_cell('''# RabbitMQ: take a message without acking it, then close the connection (the consumer "dies")
import pika
with rabbit_q.producer() as p:
    job_id = p.publish("heavy_workflow_execution", {"projectId": "proj123"})
    p.flush()
queue = rabbit_q.topology.lane_queue("default")
conn = pika.BlockingConnection(pika.URLParameters(rabbit_q.url)); ch = conn.channel()
method, props, body = ch.basic_get(queue, auto_ack=False)
print("delivered, not acked: ready now =", rabbit_q.queue_depth(queue))
conn.close()
time.sleep(0.2)
print("connection closed: ready again =", rabbit_q.queue_depth(queue))
runs = []
rabbit_q.worker(lambda job: runs.append((job.id[:8], job.redelivered))).run(max_jobs=1, timeout=10)
print("run again (id, redelivered):", runs)'''),
        new_markdown_cell("""## 3. Prefetch and concurrency: two different knobs

*Concurrency* is how many jobs one worker runs **at once** (parallelism). *Prefetch* (AMQP
`basic.qos`) is how many unacknowledged messages the broker pushes to a consumer **ahead**: a
buffer that hides the round trip to the broker, not parallelism. BullMQ has only concurrency (a
worker takes a job when a slot is free). The cell changes one knob at a time, so you can see
which one buys what: prefetch alone helps a little (no wait between jobs); concurrency multiplies
throughput while jobs spend their time waiting (here a 2 ms sleep, like a call to a database)."""),
        new_code_cell('''N = 100 if SMALL else 400
def short_job(job):
    time.sleep(0.002)
settings = [("redis", 1, None), ("redis", 16, None),
            ("rabbitmq", 1, 1), ("rabbitmq", 1, 16), ("rabbitmq", 16, 16)]
for name, concurrency, prefetch in settings:
    b = BOTH[name]
    with b.producer() as p:
        p.publish_many([JobSpec("user_variables_update", {"i": i}) for i in range(N)])
    extra = {"prefetch": prefetch} if prefetch else {}
    started = time.perf_counter()
    b.worker(short_job, concurrency=concurrency, **extra).run(max_jobs=N, timeout=60)
    knobs = f"concurrency {concurrency:2d}" + (f", prefetch {prefetch:2d}" if prefetch else "")
    print(f"{name:9s} {knobs:27s}: {N / (time.perf_counter() - started):7,.0f} jobs/s")
print("A 2 ms job caps one slot at 500 jobs/s: only concurrency lifts that cap.")'''),
        new_markdown_cell("""## 4. Retries with exponential backoff

A failed attempt is retried after `delay * 2^(attempts_made - 1)`. Redis puts the job in the
`delayed` sorted set until it is due; RabbitMQ's adapter publishes a copy into its delay levels,
then acks the original. There are 28 of them, a fixed set whatever the delays: level n is a queue
whose every message waits 2^n ms (`x-message-ttl`, 16 ms to 2^31 ms). The backoff, rounded up to
16 ms, passes the level of each of its set bits once, moving on by dead-lettering, and the last
hop dead-letters it back to the main exchange and its lane (section 5 shows one)."""),
        new_code_cell('''for name, b in BOTH.items():
    seen = []
    def flaky(job):
        seen.append(time.time())
        if job.attempts_made < 2:
            raise RuntimeError("the CRM timed out")
        return "ok"
    with b.producer() as p:
        p.publish("heavy_workflow_execution", {"projectId": "p1"}, JobOptions(attempts=3, backoff=Backoff("exponential", 200)))
    b.worker(flaky).run(max_jobs=3, timeout=20)
    gaps = [round((b2 - a) * 1000) for a, b2 in zip(seen, seen[1:])]
    print(f"{name:9s} attempts: {len(seen)}, gaps between them (ms): {gaps}   # expect >= 200, >= 400")
print("RabbitMQ retry copies wait in its 28 delay levels, e.g.", rabbit_q.topology.delay_queues()[:3], "...")'''),
        new_markdown_cell("""## 5. Delayed jobs

Redis: the `delayed` sorted set, score = due time in ms × 4096 (plus a sequence). RabbitMQ (no
plugin): 28 binary delay levels, level n a queue whose every message waits 2^n ms (16 ms to
2^31 ms); a message delayed by D ms (rounded up to 16 ms) passes the level of each set bit of D
once (800 ms = 512 + 256 + 32: three levels), then reaches its lane. A fixed set of queues,
whatever the delays; and one TTL per queue, so a long delay never blocks a short one (RabbitMQ
expires messages only at a queue's head). Neither hands the job out early."""),
        new_code_cell('''with redis_q.producer() as p:
    jid = p.publish("statistics_aggregation", {"period": "5m"}, JobOptions(delay_ms=800))
score = redis_q.client.zscore(keys.delayed, jid)
print("Redis delayed set:", jid, "due at", int(score) // 4096, "ms =", round(int(score) // 4096 / 1000 - time.time(), 2), "s from now")
from brokers.amqp.topology import delay_bits
with rabbit_q.producer() as p:
    p.publish("statistics_aggregation", {"period": "5m"}, JobOptions(delay_ms=800))
    p.flush()
first, bits = delay_bits(800)
print("RabbitMQ: 800 ms enters level", first, "and passes levels", [n for n in range(4, first + 1) if bits[f"bb-delay-bit-{n}"] == "1"], "|", rabbit_q.stats())
for name, b in BOTH.items():
    got = []
    b.worker(lambda job: got.append(time.time() - job.created_ms / 1000)).run(max_jobs=1, timeout=10)
    print(f"{name:9s} delayed job ran {got[0]:.2f} s after it was published (delay: 0.8 s)")'''),
        new_markdown_cell("""## 6. Priorities

The adapters share BullMQ's scale: **1 is the most urgent**, 10 the least, 0 none. RabbitMQ's
own rule is the other way round (a **higher** AMQP priority is delivered first, in a queue
declared with `x-max-priority`), so the AMQP adapter turns the number round when it publishes
(BullMQ 1 -> AMQP 10). One real difference is kept: BullMQ runs jobs **without** a priority
before all prioritized ones; RabbitMQ treats a message without priority as the **lowest**.

Priorities only order what is still in the queue. A RabbitMQ consumer with a large prefetch has
already taken the next jobs out of the queue, so an urgent job waits behind them: keep prefetch
near the concurrency where priorities matter (the second run below shows the damage)."""),
        new_code_cell('''plan = [None, 5, 1, 3, None]
print("BullMQ-style priority -> AMQP priority on the message:",
      {pr: rabbit_q.topology.amqp_priority(pr or 0) for pr in plan})
for name, b in BOTH.items():
    with b.producer() as p:
        for pr in plan:
            p.publish("user_variables_update", {"priority": pr}, JobOptions(priority=pr or 0))
        p.flush()
    order = []
    extra = {"prefetch": 1} if name == "rabbitmq" else {}
    b.worker(lambda job: order.append(job.data["priority"]), **extra).run(max_jobs=len(plan), timeout=10)
    print(f"{name:9s} ran in order (BullMQ-style priorities): {order}")

# The same urgent job behind 60 low-priority ones, with prefetch 1 and with prefetch 50.
for prefetch in (1, 50):
    position = []
    def ten_ms(job):
        position.append(job.data["urgent"])
        time.sleep(0.01)
    worker = rabbit_q.worker(ten_ms, prefetch=prefetch)
    thread = worker.start_in_thread(max_jobs=61, timeout=20)
    with rabbit_q.producer() as p:
        p.publish_many([JobSpec("user_variables_update", {"urgent": False}, JobOptions(priority=10))
                        for _ in range(60)])
        p.flush()
        time.sleep(0.2)  # about 20 have run; the consumer holds as many more as its prefetch allows
        p.publish("user_variables_update", {"urgent": True}, JobOptions(priority=1))
        p.flush()
    thread.join(30)
    print(f"rabbitmq prefetch {prefetch:2d}: the urgent job ran as number {position.index(True) + 1} of 61")'''),
        new_markdown_cell("""## 7. Routing by job type

RabbitMQ routes on the server: a topic exchange with one binding per job type (and an
alternate exchange for the rest). Redis does no routing: BullMQ users give each kind of work its
own queue, and the producer picks it (client-side routing)."""),
        new_code_cell('''routes = {"heavy_workflow_execution": "heavy"}
for name in ("redis", "rabbitmq"):
    b = open_broker(name, queue=f"lesson-routes-{tag}", routes=routes)
    with b.producer() as p:
        p.publish_many([JobSpec("heavy_workflow_execution", {}), JobSpec("user_variables_update", {}),
                        JobSpec("statistics_aggregation", {})])
        p.flush()
    heavy, rest = [], []
    b.worker(lambda job: heavy.append(job.name), lanes=["heavy"]).run(max_jobs=1, timeout=10)
    b.worker(lambda job: rest.append(job.name), lanes=["default"]).run(max_jobs=2, timeout=10)
    where = list(b.lane_keys) if name == "redis" else [b.topology.lane_queue(l) for l in b.lanes]
    print(f"{name:9s} heavy lane got {heavy}, default lane got {rest}; queues: {where}")
    b.remove(); b.close()'''),
        new_markdown_cell("""## 8. Durability

What survives a broker crash depends on settings, not brands: Redis with AOF `appendfsync
always` loses nothing it acknowledged, RabbitMQ loses nothing it *confirmed* for persistent
messages. Without persistence (Redis) or without confirms (RabbitMQ) jobs are lost. brokerbench
names each setting by what "accepted" means there (`brokerbench run --durability`): *memory*
(acknowledged from memory), *second* (written to disk within about a second: Redis's AOF
everysec; RabbitMQ has no such setting), *disk* (acknowledged on disk: both sides above, the
default), *majority* (a replica or a majority has it: notebook 05). Notebook 03 measures it;
here is what each broker says about itself."""),
        new_code_cell('''for name, b in BOTH.items():
    print(name, json.dumps(b.describe(), default=str)[:300])
print()
for row, text in redis_q.capabilities.table().items():
    print(f"redis    {row:24s} {text[:110]}")
for row, text in rabbit_q.capabilities.table().items():
    print(f"rabbitmq {row:24s} {text[:110]}")'''),
        new_markdown_cell("""## 9. In production: a confirm is not a delivery

A publisher confirm says RabbitMQ took responsibility for a message, not that a queue holds it:
a message that no binding matches is confirmed all the same, and dropped. Publishing with
`mandatory` makes the broker send it back (`basic.return`, 312 NO_ROUTE) before the confirm; an
alternate exchange on the publishing exchange catches it instead. Our AMQP adapter does both. On
the Redis side there is no routing to miss: the add script's reply means the job hash and its
place in the wait list are written (section 1).

The cell sends a few persistent messages with a key that no binding matches, in four ways, on
exchanges and queues of its own (deleted after), and counts with the broker's own figures:
confirms, returns, and the messages in the bound queue and in the catch queue. *Control* uses the
bound key, to prove the counting. The rest of what a queue needs in production (replicas that
must acknowledge, `consumer_timeout`, heartbeats, the dual write, shutdown, retention, timeouts)
is in `docs/teaching/production.md`."""),
        new_code_cell('''from benchmarks.experiments.unroutable import MODES, trial
N = 20
for n, mode in enumerate(MODES):
    t = trial(find("rabbitmq").url, None, mode, N, n)
    if "error" in t:
        print(f"{mode:19s} failed: {t['error']}")
        continue
    catch = "-" if t["in_catch"] is None else t["in_catch"]
    print(f"{mode:19s} key {t['routing_key']!r:9s} sent {t['messages']}  confirmed {t['acked']}  "
          f"nacked {t['nacked']}  returned {t['returned']}  in the bound queue {t['in_witness']}  "
          f"in the catch queue {catch}")'''),
        new_code_cell('''for b in BOTH.values():
    b.remove(); b.close()
print("cleaned up")'''),
    ]


def throughput() -> list:
    return [
        new_markdown_cell("""# 02 · Throughput and latency

The comparisons from results files: by default the committed reference run
(`reports/reference/results`), or your own (`BROKERBENCH_RESULTS=reports/runs/<time>`). Plots
come from `benchmarks/results/plots.py`. To run a small benchmark here first, start Jupyter with
`BROKERBENCH_NOTEBOOK_LIVE=1` (CI runs it on the small profile): it runs on the brokers the
pre-flight cell finds (a local install or `docker compose up -d` will do)."""),
        new_code_cell(SETUP),
        new_code_cell('''from IPython.display import Markdown, display
from benchmarks.results import plots, report, scenario_plots, takeaways
from benchmarks.results.summary import summary_rows
def say(text):  # a plot's takeaway, computed from the same results files (empty: nothing to say)
    if text:
        display(Markdown("**Takeaway.** " + text))
collected = report.collect([RESULTS])
print(len(collected.runs), "runs,", len(collected.sweeps), "sweeps,", len(collected.scaling), "scaling runs")'''),
        # The pre-flight only when the live cell is wanted: reading recorded results starts no broker.
        new_code_cell(LIVE_SWITCH + "\nif LIVE_WANTED:  # the pre-flight: what is here, what is missing\n"
                      + textwrap.indent(PREFLIGHT, "    ")),
        new_code_cell('''LIVE = LIVE_WANTED and LIVE_OK
if LIVE_WANTED and not LIVE_OK:
    print(("BROKERBENCH_NOTEBOOK_LIVE=1 is set, but the" if LIVE_ASKED else "The") + " live benchmark is skipped: "
          "no " + " and no ".join(MISSING) + " was found (see the cell above); the recorded results below stand in")
if LIVE:
    from benchmarks.harness.runner import run
    from benchmarks.harness.scenario import Scenario
    live = []
    for broker in ("redis", "rabbitmq"):
        for mode in ("closed", "open"):
            result, _ = run(Scenario(broker=broker, profile="mix", mode=mode, rate=150, duration_s=1.5 if SMALL else 6,
                                     warmup_s=0.5, drain_timeout_s=20))
            live.append(result)
    display(Markdown(report.to_markdown([report.summary_table(live)])))'''),
        new_markdown_cell("## The comparison table (reference run)"),
        new_code_cell('''display(Markdown(report.to_markdown([report.environment_table(collected), report.summary_table(collected.runs)])))'''),
        new_markdown_cell("""Read it as: *max jobs/s* is closed loop (producers as fast as they can, backlog bounded);
the latency columns are open loop at a fixed rate, measured from each job's **intended** send
time, so a stalled producer cannot hide latency (coordinated omission)."""),
        new_code_cell('say(takeaways.throughput(collected.runs))\nplots.throughput_by_type(collected.runs)'),
        new_code_cell('say(takeaways.percentiles(collected.runs))\nplots.latency_percentiles(collected.runs)'),
        new_markdown_cell("""The same latencies as a distribution. The left panel (a CDF) shows the bulk; the right one
plots the share of jobs *slower* than each latency on a log axis, where the slowest 1 in 100 and
1 in 1,000 are visible instead of squeezed into the top pixel row."""),
        new_code_cell('say(takeaways.tail(collected.runs))\nplots.latency_cdf(collected.runs, profile="mix")'),
        new_markdown_cell("""## "Enqueue takes 50 ms"? One publish call, measured

How long the producer waited for each `publish` in the open-loop runs, one job per call."""),
        new_code_cell('say(takeaways.publish(collected.runs))\nscenario_plots.publish_histogram(collected.runs)'),
        new_markdown_cell("""## What durability costs

The mix at each durability level, measured side by side (`scenarios/durability.toml`). A level
is named by what "accepted" means: *from memory* (Redis without persistence / RabbitMQ transient
messages, confirmed), *within ~1 s* (Redis AOF, fsync every second, BullMQ's advice: Redis only,
since RabbitMQ confirms a persistent message only after its fsync), *on disk* (AOF fsync before
each reply / persistent messages with confirms; RabbitMQ also with a quorum queue on one node).
Each bar names the profile it ran."""),
        new_code_cell('''costs = [r for r in collected.labelled if r["scenario"].get("label", "").startswith("durability-")]
if costs:
    display(Markdown(report.to_markdown([report.summary_table(costs)])))
    say(takeaways.durability(costs))
scenario_plots.durability_cost(costs) if costs else print("no durability runs in these results")'''),
        new_markdown_cell("## Latency against load, and where each broker saturates"),
        new_code_cell('say(takeaways.sweep(collected.sweeps))\n'
                      'plots.latency_vs_load(collected.sweeps) if collected.sweeps else print("no sweep in these results")'),
        new_markdown_cell("## Scaling with consumers"),
        new_code_cell('say(takeaways.scaling(collected.scaling))\n'
                      'plots.scaling_with_consumers(collected.scaling) if collected.scaling else print("no scaling runs")'),
        new_markdown_cell("""## The real clients beside ours

The same workloads through the clients the seed's service would use (BullMQ on Node, amqplib)
and the official Python ones, beside our adapters, on the same server and promise: the mix, and
no-op jobs (one worker draining a queue that was filled one add per call; end to end at
1,000 jobs/s). Older results have the drain benchmark's file instead: it is printed too."""),
        new_code_cell('''from benchmarks.results import clients_section
shown = clients_section.blocks(collected.runs + collected.labelled, collected.contenders)
display(Markdown(report.to_markdown(shown))) if shown else print("no contender runs in these results")
for d in collected.drains:
    for name, rate in d["summary"]["median_jobs_per_s"].items():
        print(f"{name:16s} {rate:10,.0f} jobs/s")'''),
    ]


def reliability() -> list:
    return [
        new_markdown_cell("""# 03 · Reliability: what gets lost, what runs twice, how fast things recover

The fault scenarios (`brokerbench scenarios`) ran on private brokers: workers and brokers were
killed with SIGKILL, connections dropped, poison jobs mixed in. *Lost* = accepted by the broker
(the producer got its reply or confirm) and never run; *duplicated* = run more than once."""),
        new_code_cell(SETUP),
        new_code_cell('''from IPython.display import Markdown, display
from benchmarks.results import plots, report, scenario_plots, takeaways
def say(text):  # a plot's takeaway, computed from the same results files (empty: nothing to say)
    if text:
        display(Markdown("**Takeaway.** " + text))
collected = report.collect([RESULTS])
display(Markdown(report.to_markdown([report.environment_table(collected)])))
rows = collected.rows
print(len(rows), "rows from the scenarios summary")'''),
        new_code_cell('''from benchmarks.commands.scenarios import table_markdown
from benchmarks.faults.common import Row
display(Markdown(table_markdown([Row(**r) for r in rows])))'''),
        new_code_cell('say(takeaways.reliability(rows))'),
        new_markdown_cell("""## A worker killed mid-job

RabbitMQ hands the dead consumer's unacknowledged jobs out again the moment its connection
closes. The BullMQ-style queue waits for the job's lock to expire and for a stalled check to
notice: the lock duration is the price of recovery.

**Limits of these numbers.** A killed *process* has its socket closed by the kernel, so RabbitMQ
hears of it at once. A vanished *host* (power cut, cable pulled) closes nothing: RabbitMQ then
waits for missed heartbeats (the suite's clients ask for 30 s; RabbitMQ's default is 60 s),
while the BullMQ timing stays what the lock says. The scenario runs BullMQ's defaults (lock 30 s,
stalled check every 30 s) and three shorter locks; the plot below puts them side by side. The
black ticks along the top of the timelines mark each redelivered run."""),
        new_code_cell('say(takeaways.recovery(collected.faults))\nscenario_plots.recovery_against_lock(collected.faults)'),
        new_code_cell('''crash = [r for r in collected.faults if r["name"].startswith("worker-crash")]
for r in crash:
    print(r["name"], r["scenario"]["broker_options"], "->", r["fault"].get("recovery_last_s"), "s")
# One timeline per broker: Redis at its shortest lock setting, RabbitMQ as it comes.
pick = {}
for r in sorted(crash, key=lambda r: r["scenario"]["broker_options"].get("lock_duration_ms", 0)):
    pick.setdefault(r["scenario"]["broker"], r)
figs = [plots.timeline(r) for r in pick.values()]
figs[0] if figs else None'''),
        new_code_cell('figs[1] if len(figs) > 1 else None'),
        new_markdown_cell("""## The broker killed under load

A backlog of thousands sat in the broker when it died. What survived depends on the
durability profile, not on the brand: both lose accepted jobs without persistence (Redis) or
without confirms (RabbitMQ, where "accepted" then only means written to a socket), and neither
loses any with them. The plots show the pair acknowledged on disk (AOF always, persistent +
confirms), one per broker.

**Limits.** A SIGKILL leaves the operating system's page cache alone, so it cannot tell Redis's
`appendfsync everysec` (fsync once a second) from `always`: only an OS crash or power loss would,
and then everysec may lose about a second of jobs. Duplicates after a crash are at-least-once at
work: jobs that ran but whose acknowledgement was not yet on disk run again."""),
        new_code_cell('''crashes = [r for r in collected.faults if r["name"].startswith("broker-crash")]
for r in crashes:
    f = r["figures"]
    print(f'{r["scenario"]["broker"]:9s} {r["fault"]["profile"]:26s} accepted {f["accepted"]:6,d} lost {f["lost"]:5,d} duplicated {f["duplicated"]:5,d}')
# The pair acknowledged on disk, one per broker: the same promise, each broker's way of keeping it.
on_disk = {"redis": "AOF always", "rabbitmq": "persistent + confirms"}
pick = []
for broker, profile in on_disk.items():
    pick += [r for r in crashes if r["scenario"]["broker"] == broker and r["fault"]["profile"] == profile][:1]
plots.timeline(pick[0]) if pick else None'''),
        new_code_cell('plots.timeline(pick[1]) if len(pick) > 1 else None'),
        new_markdown_cell("""## Producers faster than consumers

Where does the backlog go? Redis keeps it in memory until `maxmemory`; RabbitMQ raises a memory
alarm and blocks publishing connections, so nothing is refused but a publish call waits."""),
        new_code_cell('say(takeaways.memory(collected.faults))\nscenario_plots.memory_under_backpressure(collected.faults)'),
        new_markdown_cell("""## Delayed jobs: how late?

10,000 jobs delayed by 0.25-3 s each. None may run early; how late they run depends on how each
side wakes up for a due job."""),
        new_code_cell('say(takeaways.delays(collected.faults))\nscenario_plots.delay_lateness(collected.faults)'),
        new_markdown_cell("""## Try one live

With `BROKERBENCH_NOTEBOOK_LIVE=1` in Jupyter's environment (CI runs it on the small profile), the
priorities scenario, small, runs here on private brokers it starts and stops itself. Private
brokers need `redis-server` and `rabbitmq-server` installed on this machine: brokers in Docker
are not enough (the pre-flight cell says what is missing)."""),
        new_code_cell(PREFLIGHT),
        new_code_cell(private_live("The table above is recorded.") + '''
if LIVE:
    import tempfile
    from benchmarks.faults import priorities
    from benchmarks.faults.common import PrivateBrokers, Session
    brokers = PrivateBrokers()
    try:
        live_rows = priorities.run_scenario(Session(brokers, small=True, out=Path(tempfile.mkdtemp())))
    finally:
        brokers.close()
    display(Markdown(table_markdown(live_rows)))'''),
    ]


def claims_nb() -> list:
    return [
        new_markdown_cell("""# 04 · The seed's claims, measured

The explainer this project grew from says, about a workflow service on Bull/BullMQ:
enqueueing takes **50 ms**; BullMQ handles **10,000+ jobs per minute**; RabbitMQ handles
**more than 100,000 tasks per second**; you need **RabbitMQ for delivery guarantees** (and for
clustering and replication); BullMQ is **simpler to set up**. Each claim below gets the number measured, the setting it was
measured in, and a one-line verdict. The "BullMQ" figures are those of our BullMQ-style
implementation (Python, redis-py), not of the official BullMQ client; the report's sections "Our
adapters against the reference clients" (drain, latency, enqueue) compare the two."""),
        new_code_cell(SETUP),
        new_code_cell('''from IPython.display import Markdown, display
from benchmarks.results import claims, environments, report
collected = report.collect([RESULTS])
print(environments.said(collected.every_file()))  # one machine and commit, or which ones
found = claims.all_claims(collected.runs, collected.rows, collected.drains, collected.setup,
                         costs=report.durability_runs(collected),  # broker cores at each promise
                         contenders=collected.contenders)  # the seed's own clients, where they ran
display(Markdown(report.to_markdown([report.Block("table", header=["claim", "measured", "setting", "verdict"],
    rows=[[c.claim, c.measured, c.setting, c.verdict] for c in found])])))'''),
        new_markdown_cell("""## Measure the first claim yourself

One job per call into a BullMQ-style queue on the Redis this notebook finds, and into
RabbitMQ with a confirm per message."""),
        new_code_cell(PREFLIGHT),
        new_code_cell('''from brokers.provision import open_broker
from benchmarks.harness.metrics import new_histogram, record_us, summary
from benchmarks.results.percentiles import of_summary  # a percentile only with the calls it needs
import uuid
N = 200 if SMALL else 2000
if not LIVE_OK:
    print("skipped: no live brokers here (see the pre-flight cell); the claims table above is recorded")
for kind, opts in (("redis", {}), ("rabbitmq", {"confirms": "each"})) if LIVE_OK else ():
    b = open_broker(kind, queue=f"claims-{uuid.uuid4().hex[:6]}")
    p = b.producer(**opts)
    hist = new_histogram()
    for i in range(N):
        t = time.perf_counter_ns()
        p.publish("user_variables_update", {"userId": i, "step": "cart"})
        record_us(hist, time.perf_counter_ns() - t)
    p.close(); b.remove(); b.close()
    s = summary(hist)
    print(f"{kind:9s} enqueue of one job: {of_summary(s, 'p50')}, {of_summary(s, 'p99')}, max {s['max']:.2f} ms  (claim: 50 ms)")'''),
        new_markdown_cell("""## "Simpler to set up": start one of each

A private broker each, on a free port in a temporary folder (what `brokers.provision` does on
a laptop with the binaries installed)."""),
        new_code_cell('''from brokers import registry
for kind in ("redis", "rabbitmq"):
    cls = registry.get(kind).server_class()
    if not cls.binary():
        print(cls.program, "not installed here"); continue
    t = time.perf_counter(); inst = cls().start(); took = time.perf_counter() - t
    inst.cleanup()
    print(f"{cls.program:17s} ready in {took:.2f} s")
if collected.setup:
    print("declared before the first job (RabbitMQ):", collected.setup["declared"]["rabbitmq"], "| Redis: none")'''),
    ]


def replication_nb() -> list:
    return [
        new_markdown_cell("""# 05 · Replication: what survives losing the node that holds the queue

The seed's strongest argument for RabbitMQ is "clustering, replication and delivery
guarantees". Here both brokers run replicated, on private processes on this machine:

* **Redis**: a primary with 2 replicas and 3 Sentinels (a primary silent for 1 s is declared
  down; 2 of 3 Sentinels agree and promote the replica with the most data). Replication is
  **asynchronous**: the primary answers before any replica has the write. BullMQ adds jobs this
  way. A producer can also ask for `WAIT 1`: the call returns once one replica has the jobs.
  Every node writes each job to its AOF and fsyncs before it replies (`appendfsync always`).
* **RabbitMQ**: a 3-node cluster; every queue is a **quorum queue** (Raft, 3 replicas) and
  producers use publisher confirms: a confirm means a majority of the replicas has the message
  on disk.

So each node keeps what one node keeps "on disk"; `WAIT 1` and the quorum queue add the level
"on a majority": a job accepted is on another node too.

The load is closed loop (a backlog of up to 2,000 light jobs), so a failover always has jobs in
flight. *Lost* = accepted (reply or confirm received) and never run; *in doubt* = sent, and the
producer could not learn whether the broker kept it (a `WAIT` short of its replicas, a confirm
that never came, a reply lost with the connection): counted apart, and the note says how many of
them ran; *unavailable* = the longest stretch with no job accepted, up to the end of the run
("never resumed" when it did not end); *failover* = until the broker named a new leader."""),
        new_code_cell(SETUP),
        new_code_cell('''from IPython.display import Markdown, display
from benchmarks.commands.scenarios import table_markdown
from benchmarks.faults.common import Row
from benchmarks.results import environments, plots, report
collected = report.collect([RESULTS])
print(environments.said(collected.every_file()))  # one machine and commit, or which ones
rows = [r for r in collected.rows if r["scenario"].startswith("replication")]
print(len(rows), "replication rows in", RESULTS.name)
display(Markdown(table_markdown([Row(**r) for r in rows if r["scenario"] == "replication"])))'''),
        new_markdown_cell("""## A failover, second by second

Grey: jobs accepted, counted per 100 ms (scaled to jobs/s); colour: jobs finished per second.
The dashed line is the fault, the dotted one the moment the broker named a new leader."""),
        new_code_cell('''leaders = {}
for r in collected.faults:
    if r["name"].startswith("replication-leader") and r.get("figures"):
        leaders.setdefault(r["scenario"]["broker"], r)
figs = [plots.failover_timeline(r) for r in leaders.values()]
figs[0] if figs else None'''),
        new_code_cell("figs[1] if len(figs) > 1 else None"),
        new_markdown_cell("""## What the copies cost

The mix on one node against the replicated settings: closed-loop throughput and open-loop
latency. Each bar names its setting and what "accepted" means there. Every Redis node runs AOF
with an fsync before each reply, as every RabbitMQ node fsyncs its log, and the one-node rows keep
the same ("on disk"), so the difference is the copies."""),
        new_code_cell('''cost = [r for r in collected.faults if r.get("fault", {}).get("cost_mode")]
plots.replication_cost(collected.faults) if cost else print("no cost runs in these results")'''),
        new_markdown_cell("""## Try it live

With `BROKERBENCH_NOTEBOOK_LIVE=1` in Jupyter's environment (CI runs it on the small profile),
this starts both replicated brokers as private processes (about 30 s for the three RabbitMQ
nodes), kills each leader once under load, and stops everything. It needs `redis-server` and
`rabbitmq-server` installed on this machine: brokers in Docker are not enough (the pre-flight
cell says what is missing)."""),
        new_code_cell(PREFLIGHT),
        new_code_cell(private_live("The rows above are recorded.") + '''
live_figs = []
if LIVE:
    import json, os, tempfile
    from benchmarks.faults.catalog import scenario
    from benchmarks.faults.common import PrivateBrokers, Session
    brokers = PrivateBrokers()
    out = Path(os.environ.get("BROKERBENCH_NOTEBOOK_OUT") or tempfile.mkdtemp())  # the tests read the rows there
    try:
        live_rows = scenario("replication")(Session(brokers, small=True, out=out))
    finally:
        brokers.close()
    (out / "summary.json").write_text(json.dumps({"rows": [r.as_dict() for r in live_rows]}, indent=1))
    display(Markdown(table_markdown(live_rows)))
    live = report.collect([out])
    live_figs = [plots.failover_timeline(r) for r in live.faults if r.get("figures")]
live_figs[0] if live_figs else None'''),
        new_code_cell("live_figs[1] if len(live_figs) > 1 else None"),
    ]


NOTEBOOKS = {"01_concepts.ipynb": concepts, "02_throughput_latency.ipynb": throughput,
             "03_reliability.ipynb": reliability, "04_claims.ipynb": claims_nb,
             "05_replication.ipynb": replication_nb}


def write() -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells())
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = HERE / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def execute(path: Path, profile: str = "full", timeout: int = 900) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["BROKERBENCH_NOTEBOOK_PROFILE"] = profile
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="execute them and keep the outputs")
    args = parser.parse_args()
    for path in write():
        if args.run:
            nbformat.write(execute(path), path)
        print("wrote", path.relative_to(HERE.parent))
