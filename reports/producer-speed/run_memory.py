"""Issue 24's interleaved run at 'memory' (no persistence: client cost, not fsync): no-op drain
(filled one add per call) and end to end at 1,000/s for every client, 3 repetitions, pinned;
then adds in batches of 1,000 (Redis) and each confirm awaited (AMQP), 3 repetitions.

    python run_memory.py DIR [awake]    (awake: every CPU held out of idle states while a run measures)"""
import sys
from pathlib import Path

from rich.console import Console

from benchmarks.commands.run import run_workloads
from benchmarks.harness.suite import contender_workloads


def main() -> None:
    out = Path(sys.argv[1])
    console = Console()
    awake = sys.argv[2:] == ["awake"]
    noop = [w for w in contender_workloads(1.0) if w.label in ("drain", "latency")]
    clients = ["redis", "bullmq-node", "bullmq-python", "rabbitmq", "amqplib-node", "pika-plain"]
    run_workloads(noop, ["redis", "rabbitmq"], "memory", 3, out / "noop", console, quiet=True, pin_cpus=True,
                  client_names=clients, awake_cpus=awake)
    drain = next(w for w in noop if w.label == "drain")
    batch = [drain.with_(broker="redis", publish_batch=1000, label="drain-batch1000")]
    run_workloads(batch, ["redis"], "memory", 3, out / "batch1000", console, quiet=True, pin_cpus=True,
                  client_names=["redis", "bullmq-node"], awake_cpus=awake)
    each = [drain.with_(broker="rabbitmq", label="drain-each", broker_options={"confirms": "each"})]
    run_workloads(each, ["rabbitmq"], "memory", 3, out / "each", console, quiet=True, pin_cpus=True,
                  client_names=["rabbitmq", "amqplib-node", "pika-plain"], awake_cpus=awake)


if __name__ == "__main__":
    main()
