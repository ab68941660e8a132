"""``netbus bench``: a multi-process load generator, its scenarios and reports.

Scenarios (docs/benchmarks.md): ``relay`` (gateway + echo service vs a bare uvloop relay),
``talkroom``, ``fanout``, ``ccu`` and ``login``. Heavy imports (numpy, matplotlib, rich) are
deferred to the command, so importing this package stays cheap.
"""

from netbus.bench.cli import bench

__all__ = ["bench"]
