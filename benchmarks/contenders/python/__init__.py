"""Contenders in Python: the official bullmq package and the plain pika loop, as role programs
(``python -m benchmarks.contenders.python.bullmq_role`` / ``.pika_role``) speaking the role
protocol (:mod:`benchmarks.contenders.protocol`), so they run through the harness as the Node
contenders do."""
