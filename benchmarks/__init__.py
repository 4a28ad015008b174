"""brokerbench's benchmarks, in rooms: :mod:`.harness` (workloads, runner, recorders),
:mod:`.results` (results files, report, plots, claims), :mod:`.faults` (fault scenarios on
private brokers), :mod:`.commands` (the ``brokerbench`` CLI) and ``bench/`` (pytest-benchmark)."""
