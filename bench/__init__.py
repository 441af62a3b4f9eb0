"""brokerd's benchmark suite: overhead against native and against strace,
every figure a ratio measured in one run (see docs/performance.md).

Run it from the repository root with ``.venv/bin/python -m bench`` (or
``bench/run``); ``--quick`` scales every workload down to about a minute.
"""
