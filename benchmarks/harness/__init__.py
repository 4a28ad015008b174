"""The harness: workloads, scenarios, producer and consumer processes, recorders.

Data flows one way: a workload (:mod:`.workloads`, :mod:`.scenario`, :mod:`.suite`) is run by
:mod:`.runner` in producer and consumer roles (:mod:`.roles`, watched through
:mod:`.supervision`), which record into :mod:`.metrics`; the runner hands the figures to
:mod:`benchmarks.results`. Nothing here imports the fault scenarios or the report.
"""
