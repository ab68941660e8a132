"""netbus-bench: the load tool of netbus, as its own distribution (``netbus bench``).

Scenarios (docs/benchmarks.md): ``relay`` (gateway + echo service vs a bare uvloop relay),
``talkroom``, ``fanout``, ``ccu`` and ``login``. netbus itself never imports this package:
``netbus bench`` loads it through the ``netbus.commands`` entry point, and only when run.
"""

__all__: list[str] = []
