"""The trial-side session: `tune.report`, `tune.get_checkpoint`, `tune.get_context`.

One trial runs at a time in a trial actor, so the session is a module global of the actor's
process (threads the user starts in a trial see it too).
"""
import logging

logger = logging.getLogger("zray.tune")

_session = None
_warned = False


def _set_session(session):
    global _session
    _session = session


def _get_session():
    return _session


def _no_session(what):
    global _warned
    if not _warned:
        _warned = True
        logger.warning("tune.%s() was called outside of a Tune trial; it does nothing there", what)


def report(metrics=None, *, checkpoint=None, **kwargs):
    """Report metrics (a dict, keyword arguments, or both) and optionally a Checkpoint.

    Ray 2.x takes only the dict; the keyword form (`tune.report(loss=0.1)`) is Ray's older
    form, still in its README, and is accepted here too.
    """
    if metrics is None:
        metrics = {}
    elif not isinstance(metrics, dict):
        raise TypeError(f"tune.report() takes a dict of metrics, got {type(metrics).__name__}")
    if kwargs:
        metrics = {**metrics, **kwargs}
    session = _session
    if session is None:
        _no_session("report")
        return None
    return session.report(metrics, checkpoint)


def get_checkpoint():
    """The checkpoint this trial (re)starts from, or None."""
    session = _session
    if session is None:
        return None
    return session.get_checkpoint()


class TuneContext:
    def __init__(self, session=None):
        self._s = session

    def get_trial_name(self):
        return self._s.trial_name if self._s else None

    def get_trial_id(self):
        return self._s.trial_id if self._s else None

    def get_trial_dir(self):
        return self._s.trial_dir if self._s else None

    def get_trial_resources(self):
        return dict(self._s.resources) if self._s else {}

    def get_experiment_name(self):
        return self._s.experiment_name if self._s else None

    def get_storage(self):
        return self._s.experiment_dir if self._s else None

    def get_world_size(self):
        return 1

    def get_world_rank(self):
        return 0

    def get_local_rank(self):
        return 0

    def get_local_world_size(self):
        return 1

    def get_node_rank(self):
        return 0

    def get_metadata(self):
        return {}


def get_context():
    return TuneContext(_session)
