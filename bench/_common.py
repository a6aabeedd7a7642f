"""The bench harness's old single module, now only its names: the harness is split by
concern into _code (the code measured), _servers (servers, databases, streams, worker
processes), _figures (CPU, load, percentiles, the results file) and _latency (publish ->
applied latency). Import from those. This stays while bench/context*.py, which another
change edits at the same time, still imports from here; it goes once they import from the
modules above.
"""

from bench._code import (
    CODE_DIRS,
    ROOT,
    SNAPSHOT_ENV,
    SNAPSHOT_PREFIX,
    code_dir,
    code_version,
    git_state,
    imported_code,
    reexec_on_snapshot,
    tree_hash,
)
from bench._figures import (
    CpuMeter,
    cpu_seconds,
    loadavg,
    machine_jiffies,
    pct,
    percentile,
    write_report,
)
from bench._latency import Outgoing, Timings, ack_stream_seq, steady_publish
from bench._servers import (
    Postgres,
    Servers,
    admin_url,
    consumer_info,
    embedded_servers,
    engram_cmd,
    fresh_database,
    fresh_streams,
    start_process,
    stop_process,
    wait_consumer,
    worker_login,
)

__all__ = [
    "CODE_DIRS",
    "ROOT",
    "SNAPSHOT_ENV",
    "SNAPSHOT_PREFIX",
    "CpuMeter",
    "Outgoing",
    "Postgres",
    "Servers",
    "Timings",
    "ack_stream_seq",
    "admin_url",
    "code_dir",
    "code_version",
    "consumer_info",
    "cpu_seconds",
    "embedded_servers",
    "engram_cmd",
    "fresh_database",
    "fresh_streams",
    "git_state",
    "imported_code",
    "loadavg",
    "machine_jiffies",
    "pct",
    "percentile",
    "reexec_on_snapshot",
    "start_process",
    "steady_publish",
    "stop_process",
    "tree_hash",
    "wait_consumer",
    "worker_login",
    "write_report",
]
