"""`tune.track.log(**metrics)`: the oldest Tune API, an alias of `tune.report`."""
from .session import report


def log(metrics=None, **kwargs):
    return report(metrics, **kwargs)


__all__ = ["log"]
