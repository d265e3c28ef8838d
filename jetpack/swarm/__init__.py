"""The swarm: handing the right work to the right agent, and running agents on the queue.

``graph`` analyses the live DAG (TaskGraph), ``strategies`` and ``holds`` decide who claims what,
``simulate`` runs a discrete-event swarm on the real services; ``start`` is ``jetpack start``.
"""
