"""Fault and semantics scenarios: what each broker loses, duplicates and how fast it recovers.

Each scenario module has ``run_scenario(session) -> list[Row]``; see :mod:`.catalog`.
"""
