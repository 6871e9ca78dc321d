"""The cluster's Prometheus figures, read from the running cluster part at scrape time: no
background bookkeeping, nothing computed between scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:  # the runtime registers this collector: import it for types only
    from shieldes.cluster.runtime import ClusterRuntime


class ClusterCollector:
    """Cluster figures computed at scrape time (no background bookkeeping)."""

    def __init__(self, runtime: ClusterRuntime) -> None:
        self._rt = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        rt = self._rt
        gauges = (
            ("shieldes_cluster_nodes_alive", "cluster nodes alive (this one included)", rt.alive_count()),
            ("shieldes_cluster_leader", "1 if this node is the leader", int(rt.leader.is_leader)),
            ("shieldes_cluster_leader_epoch", "fencing epoch while leading", rt.leader.epoch),
            ("shieldes_cluster_log_position", "log position applied", rt.projector.position),
            ("shieldes_cluster_log_lag", "events behind the known log head", rt.projector.lag),
            ("shieldes_cluster_listener_connected", "1 while LISTEN is up", int(rt.listener.connected)),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily("shieldes_cluster_listener_connects", "LISTEN (re)connects",
                                  value=rt.listener.connects)
        g = rt.gossip
        if g is None:
            return
        st = g.stats
        msgs = CounterMetricFamily("shieldes_gossip_messages", "gossip messages", labels=["direction"])
        msgs.add_metric(["sent"], st.sent)
        msgs.add_metric(["received"], st.received)
        yield msgs
        size = CounterMetricFamily("shieldes_gossip_bytes", "gossip payload bytes", labels=["direction"])
        size.add_metric(["sent"], st.sent_bytes)
        size.add_metric(["received"], st.received_bytes)
        yield size
        rejected = CounterMetricFamily("shieldes_gossip_rejected", "gossip messages refused",
                                       labels=["reason"])
        rejected.add_metric(["signature"], st.rejected_signature)
        rejected.add_metric(["stale"], st.rejected_stale)
        rejected.add_metric(["malformed"], st.rejected_malformed)
        yield rejected
        yield CounterMetricFamily("shieldes_gossip_send_errors", "pushes that failed", value=st.send_errors)
        yield CounterMetricFamily("shieldes_gossip_push_timeouts", "pushes that missed their deadline",
                                  value=st.push_timeouts)
        deadlines = GaugeMetricFamily("shieldes_gossip_push_deadline_seconds",
                                      "the deadline of the next push to each gossip target", labels=["target"])
        for target, seconds in sorted(st.push_deadline.items()):
            deadlines.add_metric([target], seconds)
        yield deadlines
        kinds = CounterMetricFamily("shieldes_gossip_pushes", "gossip messages sent, whole states or deltas",
                                    labels=["kind"])
        kinds.add_metric(["full"], st.full_sent)
        kinds.add_metric(["delta"], st.deltas_sent)
        yield kinds
        yield CounterMetricFamily("shieldes_gossip_need_full", "deltas refused for lack of their base",
                                  value=st.need_full)
