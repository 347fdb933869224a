"""The node daemon: one per host, holding the local scheduler, the worker pool and the store."""
