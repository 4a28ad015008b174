"""The claims' verdicts say what their measurement cannot show, from the figures given."""

from __future__ import annotations

from benchmarks.results import claims
from benchmarks.results.experiments import acks_blocks


def _closed_run(rate: float, consumers: int = 2, concurrency: int = 16) -> dict:
    return {"scenario": {"broker": "redis", "mode": "closed", "profile": claims.HEAVY, "consumers": consumers,
                         "concurrency": concurrency, "time_scale": 0.01},
            "figures": {"throughput": {"out_per_s": rate}}, "environment": {}, "durability": {"profile": "AOF"}}


def test_the_per_minute_claim_projects_production_length_by_littles_law():
    claim = claims.bullmq_per_minute([_closed_run(1000.0), _closed_run(1200.0), _closed_run(1100.0)])
    assert claim is not None
    assert "66,000 jobs/min" in claim.measured  # the median run, with short jobs
    assert "960 jobs/min" in claim.measured     # 32 slots / 2 s x 60
    assert "333 running at once" in claim.verdict and "worker fleet" in claim.verdict


def _row(profile: str, dup: int, note: str) -> dict:
    return {"scenario": "backpressure", "broker": "redis", "profile": profile, "lost": 0, "duplicated": dup,
            "note": note}


def test_the_shared_cache_claim_rests_on_the_eviction_rows():
    rows = [_row("maxmemory 24mb, volatile-lru", 92, "evicted keys 1273"),
            _row("maxmemory 24mb, noeviction", 0, "refused 7250")]
    claim = claims.shared_cache(rows)
    assert claim is not None and "92 jobs ran twice" in claim.measured and "noeviction" in claim.verdict
    assert "(92 ran twice here)" in claim.verdict
    assert claims.shared_cache(rows[:1]) is None, "no verdict without both rows"
    rows[0]["duplicated"] = 0
    calm = claims.shared_cache(rows)
    assert "none ran twice here" in calm.verdict and "run twice" not in calm.verdict


def test_the_acks_experiment_table_and_takeaway_come_from_its_trials():
    def trial(queue_type: str, wait_s: float, back: int, reported: int) -> dict:
        return {"messages": 10, "acked": 10, "ready_before_kill": 0, "queue_type": queue_type, "wait_s": wait_s,
                "back_after_restart": back, "count_after_restart": reported}

    d = {"settings": {"messages": 10, "waits_s": [0, 1]},
         "trials": [trial("classic", 0, 10, 10), trial("classic", 1, 0, 0), trial("quorum", 0, 0, 4),
                    trial("quorum", 1, 0, 0)]}
    blocks = acks_blocks(d)
    table = next(b for b in blocks if b.kind == "table")
    assert table.rows[0][:4] == ["classic", "0", "10", "10"] and table.rows[2][3] == "0"
    assert "delivered 10 acknowledged messages again" in blocks[-1].text
    assert "quorum queue delivered at most 0 again" in blocks[-1].text


def test_the_100k_row_quotes_the_median_of_the_fastest_job_type_not_its_best_run():
    def run(profile: str, rate: float) -> dict:
        return {"scenario": {"broker": "rabbitmq", "mode": "closed", "profile": profile},
                "figures": {"throughput": {"out_per_s": rate}}, "environment": {}}

    runs = [run("mix", 3682.0), run("mix", 3512.0), run("mix", 3400.0),
            run(claims.HEAVY, 3600.0), run(claims.HEAVY, 3300.0), run(claims.HEAVY, 3350.0)]
    claim = claims.rabbitmq_per_second(runs, [])
    assert claim is not None
    assert claim.measured.startswith("3,512 (3,400-3,682)/s with real job work (mix, closed loop: median of 3 runs)")
    assert "3,682/s" not in claim.measured and "3,600" not in claim.measured


def _contender(run: dict, client: str) -> dict:
    run["scenario"] = {**run["scenario"], "client": client}
    return run


def test_the_bullmq_claims_are_answered_with_the_seeds_own_client_where_it_ran(tmp_path):
    """With BullMQ on Node's runs in the results, the per-minute and enqueue claims quote its
    figures first (and say so), ours beside them; without them, ours alone, as before."""
    from tests.helpers.results_files import write_run

    ours = [_closed_run(1000.0), _closed_run(1200.0), _closed_run(1100.0)]
    node_closed = [_contender({"scenario": {"broker": "redis", "mode": "closed", "profile": "mix"},
                               "figures": {"throughput": {"out_per_s": rate}}, "environment": {}}, "bullmq-node")
                   for rate in (400.0, 500.0, 450.0)]
    node_drain = [_contender({"scenario": {"broker": "redis", "mode": "drain", "profile": claims.HEAVY},
                              "figures": {"throughput": {"out_per_s": 1.0}}, "environment": {},
                              "drain": {"jobs_per_s": rate}}, "bullmq-node") for rate in (12_000.0, 14_000.0, 13_000.0)]
    python_closed = [_contender(dict(node_closed[0]), "bullmq-python")]
    claim = claims.bullmq_per_minute(ours, [], [*node_closed, *node_drain, *python_closed])
    assert claim is not None
    assert claim.measured.startswith("BullMQ (Node) (the seed's own client): 27,000 jobs/min of mix")
    assert "780,000 no-op jobs/min drained by one worker process (median of 3 runs)" in claim.measured
    assert "ours: 66,000 jobs/min" in claim.measured, "our adapter's figure stays beside it"
    assert claim.verdict.startswith("with the official BullMQ (Node), the seed's own client: true (780,000/min")
    alone = claims.bullmq_per_minute(ours, [], python_closed)
    assert alone is not None and "seed's own client" not in alone.measured, "the Python package is not the seed's"

    opened, _ = write_run(tmp_path, broker="redis", n=2_000, latency_ms=2.0, seed=1)
    node_open, _ = write_run(tmp_path, broker="redis", n=2_000, latency_ms=0.5, seed=2)
    said = claims.enqueue_latency([opened], [_contender(node_open, "bullmq-node")])
    assert said is not None and said.measured.startswith("BullMQ (Node): p50 ")
    assert "; ours: p50 " in said.measured and "the official BullMQ (Node)" in said.setting
    node_p50 = node_open["figures"]["latency_ms"]["publish"]["p50"]
    assert f"{50 / node_p50:,.0f}x under 50 ms at p50" in said.verdict, "the verdict rests on the seed's client"
    assert "the official" not in claims.enqueue_latency([opened]).setting


def test_the_rabbitmq_claim_adds_the_seeds_own_client():
    runs = [{"scenario": {"broker": "rabbitmq", "mode": "closed", "profile": "mix"},
             "figures": {"throughput": {"out_per_s": 3000.0}}, "environment": {}}]
    node = [_contender({"scenario": {"broker": "rabbitmq", "mode": "drain", "profile": "mix"},
                        "figures": {"throughput": {"out_per_s": 1.0}}, "environment": {},
                        "drain": {"jobs_per_s": 17_000.0}}, "amqplib-node")]
    claim = claims.rabbitmq_per_second(runs, [], None, node)
    assert claim is not None and "amqplib (Node) (the seed's own client): 17,000 no-op jobs/s drained" in claim.measured
    assert "the seed's own client, amqplib (Node)" in claim.setting
