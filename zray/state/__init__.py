"""Observability: what nodes remember of their tasks, state queries, metrics, the timeline.

I/O-free pieces (query.py, records.py, metrics_table.py, prometheus.py, timeline.py) and the
client that sends a query to a node (client.py). The node side is zray/node/state_service.py;
the public API is zray.util.state, zray.util.metrics and zray.timeline.
"""
