"""Result files of a trial, as callbacks: result.json (JSON lines), progress.csv, params.json,
params.pkl, and TensorBoard event files when tensorboardX (or torch with tensorboard) is
installed."""
import csv
import json
import logging
import math
import numbers
import os

import cloudpickle

from .callback import Callback
from .search.variant_generator import flatten_dict

logger = logging.getLogger("zray.tune")

EXPR_PARAM_FILE = "params.json"
EXPR_PARAM_PICKLE_FILE = "params.pkl"
EXPR_RESULT_FILE = "result.json"
EXPR_PROGRESS_FILE = "progress.csv"
EXPR_ERROR_FILE = "error.txt"


def _json_default(value):
    for attr in ("tolist", "item"):
        if hasattr(value, attr):
            try:
                return getattr(value, attr)()
            except Exception:   # noqa: BLE001 - fall back to the repr below
                pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


def to_json(value, **kwargs):
    return json.dumps(value, default=_json_default, **kwargs)


class LoggerCallback(Callback):
    """Opens per-trial files on first use, closes them when the trial ends."""

    def __init__(self):
        self._files = {}

    def _close(self, trial):
        f = self._files.pop(trial.trial_id, None)
        if f is not None:
            f.close()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_experiment_end(self, trials, **info):
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"] = {}
        return state


class JsonLoggerCallback(LoggerCallback):
    def on_trial_start(self, iteration, trials, trial, **info):
        os.makedirs(trial.local_path, exist_ok=True)
        with open(os.path.join(trial.local_path, EXPR_PARAM_FILE), "w") as f:
            f.write(to_json(trial.config, indent=2, sort_keys=True))
        with open(os.path.join(trial.local_path, EXPR_PARAM_PICKLE_FILE), "wb") as f:
            cloudpickle.dump(trial.config, f)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        f = self._files.get(trial.trial_id)
        if f is None:
            os.makedirs(trial.local_path, exist_ok=True)
            f = self._files[trial.trial_id] = open(
                os.path.join(trial.local_path, EXPR_RESULT_FILE), "a")
        f.write(to_json(result) + "\n")
        f.flush()


class CSVLoggerCallback(LoggerCallback):
    def __init__(self):
        super().__init__()
        self._writers = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = flatten_dict({k: v for k, v in result.items() if k != "config"})
        writer = self._writers.get(trial.trial_id)
        if writer is None:
            os.makedirs(trial.local_path, exist_ok=True)
            path = os.path.join(trial.local_path, EXPR_PROGRESS_FILE)
            existing = None
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path) as rf:
                    existing = next(csv.reader(rf), None)
            f = self._files[trial.trial_id] = open(path, "a", newline="")
            writer = csv.DictWriter(f, fieldnames=existing or list(row), extrasaction="ignore")
            if existing is None:
                writer.writeheader()
            self._writers[trial.trial_id] = writer
        writer.writerow({k: row.get(k) for k in writer.fieldnames})
        self._files[trial.trial_id].flush()

    def _close(self, trial):
        self._writers.pop(trial.trial_id, None)
        super()._close(trial)

    def on_experiment_end(self, trials, **info):
        self._writers.clear()
        super().on_experiment_end(trials, **info)

    def __getstate__(self):
        state = super().__getstate__()
        state["_writers"] = {}
        return state


class TBXLoggerCallback(LoggerCallback):
    """TensorBoard event files in each trial's directory: every numeric value of a result as
    the scalar `ray/tune/<flattened key>` at step `training_iteration`. Written with
    tensorboardX, else torch.utils.tensorboard (which needs the tensorboard package); imported
    on the first result."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        writer = self._files.get(trial.trial_id)
        if writer is None:
            writer_class = summary_writer_class()
            if writer_class is None:
                raise ImportError("TBXLoggerCallback needs tensorboardX (pip install "
                                  "tensorboardX) or torch with tensorboard")
            os.makedirs(trial.local_path, exist_ok=True)
            writer = self._files[trial.trial_id] = writer_class(trial.local_path, flush_secs=30)
        step = result.get("training_iteration", 0)
        for key, value in flatten_dict({k: v for k, v in result.items() if k != "config"}).items():
            if _is_scalar(value):
                writer.add_scalar(f"ray/tune/{key}", float(value), global_step=step)


def _is_scalar(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    # numpy scalars of every width (np.float32 and np.int64 are not Python numbers)
    return getattr(value, "shape", None) == () and getattr(value, "dtype", None) is not None \
        and getattr(value.dtype, "kind", "") in "fiu"


def summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter
    except ImportError:
        return None


def tensorboardx_available():
    """Whether an event-file writer can be imported, judged without importing one (torch is
    slow to import, and tensorboard is needed beside it)."""
    import importlib.util
    if importlib.util.find_spec("tensorboardX") is not None:
        return True
    return importlib.util.find_spec("tensorboard") is not None and \
        importlib.util.find_spec("torch") is not None


class BackgroundLoggers(Callback):
    """Runs file-writing callbacks on one thread of their own, in order, so the driver's loop
    does not wait for the disk. `on_experiment_end` waits until everything is written."""

    _HOOKS = ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error")

    def __init__(self, callbacks):
        import queue
        import threading
        self.callbacks = list(callbacks)
        self._queue = queue.SimpleQueue()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="zray-tune-loggers", daemon=True)
        self._thread.start()

    def _main(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            hook, kwargs = item
            try:
                for cb in self.callbacks:
                    getattr(cb, hook)(**kwargs)
            except Exception as e:   # noqa: BLE001 - re-raised on the driver at the end
                if self._error is None:
                    self._error = e
                logger.exception("a result logger failed in %s", hook)

    def __getattribute__(self, name):
        if name in BackgroundLoggers._HOOKS:
            q = object.__getattribute__(self, "_queue")
            return lambda **kwargs: q.put((name, kwargs))
        return object.__getattribute__(self, name)

    def on_experiment_end(self, trials, **info):
        self._queue.put(("on_experiment_end", {"trials": trials, **info}))
        self._queue.put(None)
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            logger.warning("the result loggers did not finish writing within 60 s")
        if self._error is not None:
            raise self._error

    def __getstate__(self):
        return {"callbacks": self.callbacks}

    def __setstate__(self, state):
        self.__init__(state["callbacks"])


def default_loggers():
    out = [JsonLoggerCallback(), CSVLoggerCallback()]
    if tensorboardx_available():
        out.append(TBXLoggerCallback())
    return [BackgroundLoggers(out)]
