"""The image's buffer-mode supervisor: one buffer worker per GPU, each restarted when it asks.

Vast.ai restarts nothing inside a container, and the buffer worker exits 1 when it cannot go on
(a CUDA error, its heartbeat dead) so that someone restarts it; here that someone is
``fastwan-buffer-supervisor``, which the entrypoint runs in buffer mode. It is Python rather than
bash because its decisions (restart or not, backoff, which exit status the container ends with,
one plan per GPU) are then plain functions tested without processes or clocks, and the process
handling (one waiter thread per worker, signals as events) has no bash pitfalls such as traps
that fire only between commands or ``wait -n`` across restarted children.

- ``plan.py``: how many workers, and each one's GPU, id, state folder and metrics port.
- ``backoff.py``: the wait before a restart.
- ``keeper.py``: the processes: start, watch, restart, forward signals, the exit status.
"""
