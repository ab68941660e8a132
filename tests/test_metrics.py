"""netbus/metrics.py: bounded labels, and no application stype known in advance."""

from __future__ import annotations

from netbus.metrics import Metrics


def packets(metrics: Metrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value("netbus_packets_total", labels)
    return 0.0 if value is None else value


def test_only_the_control_channel_and_declared_stypes_are_labelled_by_number() -> None:
    metrics = Metrics("x")
    metrics.packet("in", 0, 1, 10)  # the gateway control channel: framework, always known
    metrics.packet("in", 1, 1, 10)  # not declared here: folded, whatever a demo role uses
    metrics.packet("in", 2, 1, 10)
    assert packets(metrics, direction="in", stype="0", ctype="1") == 1
    assert packets(metrics, direction="in", stype="other", ctype="1") == 2
    metrics.add_stype(16)  # a configured route / a registered service
    metrics.packet("out", 16, 3, 12)
    assert packets(metrics, direction="out", stype="16", ctype="3") == 1


def test_hostile_numbers_cannot_grow_the_label_space() -> None:
    metrics = Metrics("x")
    metrics.add_stype(16)
    for n in range(1000, 3000):
        metrics.packet("in", n, n, 10)
        metrics.packet("in", 16, n, 10)
    families = [s for f in metrics.registry.collect() for s in f.samples]
    labels = {tuple(sorted(s.labels.items())) for s in families if s.name == "netbus_packets_total"}
    assert len(labels) == 2  # (other, other) and (16, other)
