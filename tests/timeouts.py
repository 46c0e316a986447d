"""How long the tests wait: one generous, named figure per kind of wait, used everywhere.

Every wait ends as soon as what it waits for has happened, so these figures never slow a
passing test down; they only bound how long a broken one takes to fail. They assume a CI
machine that is 5-10x slower than an idle one (2 shared cores, maybe a second suite beside
us). No test asserts that something was fast: speeds are printed or measured in ``bench/``.
"""

from __future__ import annotations

BROKER_START = 180.0
"""The embedded Kafka (a JVM) accepts clients (idle: 10-20 s)."""

WORKER_READY = 300.0
"""A ``seismo worker`` answers ``/healthz`` holding partitions (idle: 5-15 s; 30 s when the
MiniLM cascade loads its model)."""

SERVICE_READY = 120.0
"""A helper process or loopback server listens: Prometheus, the live page, the x-push
endpoint, the reference receiver (idle: under 5 s)."""

RECORD_ARRIVES = 120.0
"""Something produced upstream shows up downstream: a record on a topic, an alert at the
webhook or on the page, a count in the metrics, a series in Prometheus."""

PIPELINE_DRAINS = 600.0
"""A replay's ``--wait-timeout``: the worker has processed and committed a whole replay
(the largest, the Oklahoma demo of ../shared/data, takes minutes on an idle machine)."""

COMMAND_FINISHES = 900.0
"""A ``seismo`` command run to completion in a child process exits by itself."""

CONNECTOR_PROGRESS = 60.0
"""An in-process connector against a loopback fake reaches a state (posts acknowledged,
reconnects counted, a cursor saved); idle: well under a second."""

PROCESS_STOPS = 120.0
"""A child process sent SIGTERM (a worker, a connector, Prometheus) has exited; then SIGKILL."""

TASK_STOPS = 30.0
"""An in-process task (a connector runner, a server) has finished after its stop request.
A stop that hangs fails after this; it is never a measure of promptness: what a stop must not
wait for (a silent upstream, a sink that never answers) lasts for ever in those tests, or
longer than this (aiokafka's own request timeout is 40 s)."""

HTTP_REQUEST = 30.0
"""One HTTP request to a loopback server."""

POLL = 0.2
"""How often a process-level wait looks again (in-process waits look every few ms)."""
