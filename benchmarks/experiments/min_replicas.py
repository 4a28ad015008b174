"""Design, not code: ``min-replicas-to-write`` as a Redis replication profile.

NOT YET BUILT, NOT YET RUN. This module holds no code on purpose: it says where the profile
would go, what has to change for it to take effect, and what its rows should expect, for
whoever builds it. docs/teaching/production.md (item 1) points here.

Why
---
The replication scenario (benchmarks/faults/replication.py) measures Redis + Sentinel with
asynchronous replication (BullMQ's way: accepted jobs lost when a hung or cut-off primary is
replaced) and with ``WAIT 1`` (none lost, but producers get nothing accepted for a long stretch
and many jobs end in doubt): docs/teaching/which_to_choose.md, row "The same on Redis". Redis's
standard answer sits between the two: ``min-replicas-to-write N`` with ``min-replicas-max-lag M``
on every node. Replicas acknowledge the replication stream every second; a primary that has not
heard from N of them within M seconds refuses every write with ``NOREPLICAS``. A primary cut off
from its replicas stops accepting about M (to M + 1) seconds after the cut, so a failover loses
at most about that much; nothing checks that a given write reached a replica (Redis docs,
Replication, "Allow writes only with N attached replicas"; NOREPLICAS error page). The rows
would show, beside the other two: jobs lost per hang or cut (expected: bounded, not zero), the
longest stretch with nothing accepted (from about M s after the cut until the producers reach the
promoted replica; see the last section: with the adapter as it is, that may be only once the old
primary is demoted), jobs in doubt (expected: none from this setting: a refusal is certain), jobs
run twice.

Where the profiles are declared, and why adding one is not enough
------------------------------------------------------------------
brokers/bullmq_redis/driver.py, ``DRIVER.replication``: a ``Replication`` whose ``profiles`` are
``DurabilityProfile("async replication (BullMQ's way)", ..., level="disk")`` and
``DurabilityProfile("WAIT 1", ..., options={"wait_replicas": 1}, level="majority")``, with
``server=AOF_ALWAYS`` for every node. A profile's ``options`` reach the adapter; server settings
come only from ``Replication.server``: ``Replication.new_cluster()`` builds one
``RedisSentinelGroup(config=server)``, and a scenario session keeps one group per kind
(``PrivateBrokers.cluster`` in benchmarks/faults/common.py) for every profile and fault.
``run_case`` passes ``profile.options`` and never reads ``profile.server``. A profile that adds
only server settings would therefore run as plain async replication, under another name.

The profile (two rows: the lag of the Redis docs' example and default, and a short one)::

    DurabilityProfile(
        "min-replicas 1, max lag 10 s",
        "a job is accepted once the primary has it on disk, and only while 1 replica has acknowledged "
        "the replication stream within 10 s: a primary cut off from its replicas refuses writes "
        "(NOREPLICAS) about 10 s after the cut, so a failover loses about that much at most (Redis "
        "docs: Replication, 'Allow writes only with N attached replicas'); not lossless",
        False,
        server={"min-replicas-to-write": "1", "min-replicas-max-lag": "10"},
        level="disk",
    )

and the same with ``"2"``. Level "disk", as async replication: no write is confirmed on a copy,
so not "majority". Its promise must say "bounded", never "no loss" (``no_loss=False``).

What has to change
------------------
1. Per-profile server settings on the replicated broker (preferred): ``PrivateBrokers.cluster(kind,
   server=None)`` keeps one group per (kind, extra settings), started with ``{**replication.server,
   **server}``; ``run_case`` and ``cost_rows`` (benchmarks/faults/replication.py) ask for
   ``session.brokers.cluster(kind, dict(profile.server))``. Every data node gets the settings, as
   any replica may be promoted (``RedisSentinelGroup`` passes ``config`` to each node; ``heal()``
   restarts killed nodes from ``node.config``, which keeps them); Sentinels need nothing. It costs
   one more group (six redis processes, a few MB each), started once per session and removed by
   ``PrivateBrokers.close()`` with the others. On a partitionable machine each group has a network
   namespace of its own, whose /24 is drawn at random (brokers/netns.py): make sure it differs from
   the live groups' before creating it.
   The alternative, ``CONFIG SET`` on every node before the profile's rows and back to 0 / 10
   after (in a ``finally``), must also reach nodes ``heal()`` restarts from ``node.config``: more
   moving parts for the same result.
2. The row's expectation (``_expectation`` and ``met`` in replication.py): today a profile that is
   not ``no_loss`` passes whenever ``lost`` was measured. Give ``DurabilityProfile`` a field such
   as ``loss_window_s`` (M + 1 here) and expect, for hang and partition: ``lost`` at most the jobs
   the producers had accepted from half a second before the fault to ``loss_window_s`` after it
   (the sum of ``figures.timeline.accepted_per_100ms`` over that window: what the old primary
   could have taken and lost).
3. Tests and pages that list the profiles: tests/harness/test_durability.py asserts the Redis
   replication profiles by name and level; benchmarks/results/quoted.py picks replication rows by
   profile name (safe); the report's replication table and notebook 05 list every profile (check
   they lay out three Redis rows). A fault test on the small profile: with both replicas paused,
   a publish is *refused* (not in doubt), and the settings are on every node (``CONFIG GET``).

What our adapter does with NOREPLICAS today, and what to check first
--------------------------------------------------------------------
``NOREPLICAS`` is among the "not now" replies (brokers/bullmq_redis/connection.py,
``UNAVAILABLE_REPLIES``): ``guarded`` raises BrokerUnavailable and the producer counts the call as
never run (``Attempts.may_have_sent``), so the jobs are refused, not in doubt, which is right:
Redis ran nothing. Check first, by hand on a private Redis 7.0 primary with no replica and
``min-replicas-to-write 1``, how the refusal of our ``addJobs`` reaches redis-py: addJobs.lua has
no ``#!lua`` header (the other scripts have ``flags=allow-oom``), so Redis refuses its first write
command inside the script rather than the whole call up front; if the reply does not start with
``NOREPLICAS`` (a script-error prefix), ``guarded`` calls it a script error (PublishRejected):
still refused, but not an outage, and the producer would not wait for the new primary.
Where the producers go next: redis-py drops a connection on READONLY (a demoted primary) and asks
a Sentinel again (connection.py's module text), but a ``NOREPLICAS`` reply leaves the connection
open, to the old primary. In a partition (clients still reach the cut-off primary) producers
would then be refused until it is demoted after the heal, which could make this profile's stretch
with nothing accepted no shorter than ``WAIT 1``'s. Decide before building the rows whether the
adapter should treat NOREPLICAS as READONLY (close the connection, ask Sentinel for the primary);
either way, say in the profile's promise which one ran.
Workers: every Redis error is transient for them (brokers/bullmq_redis/worker.py,
``transient_errors``), retried for ``reconnect_for_s`` (90 s in the scenario); lock renewals and
stalled checks are writes too and fail meanwhile (brokers/bullmq_redis/locks.py logs and goes
on). Expect duplicates: a job whose lock lapsed while writes were refused is put back by the first
stalled check after they resume, while its worker may still be running it.

Sources: https://redis.io/docs/latest/operate/oss_and_stack/management/replication/#allow-writes-only-with-n-attached-replicas;
https://redis.io/docs/latest/develop/reference/errors/common/noreplicas/;
https://redis.io/docs/latest/commands/wait/ (WAIT does not make failover strongly consistent).
"""
