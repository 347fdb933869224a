"""The class API (`Trainable`), `with_parameters`, `with_resources` and `PlacementGroupFactory`."""
import copy
import functools
import inspect
import logging
import os
import pickle
import time

logger = logging.getLogger("zray.tune")

_CHECKPOINT_DICT_FILE = "_dict_checkpoint.pkl"


class Trainable:
    """Subclass and override `setup`, `step` (-> dict of metrics), `save_checkpoint`,
    `load_checkpoint`, and optionally `reset_config` (for actor reuse) and `cleanup`."""

    def __init__(self, config=None, logger_creator=None, storage=None):
        self.config = config or {}
        self._iteration = 0
        self._time_total = 0.0
        self._timesteps_total = None
        self._episodes_total = None
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0
        self._restored = False
        self._storage = storage
        self._trial_info = storage
        start = time.time()
        self.setup(copy.deepcopy(self.config))
        setup_time = time.time() - start
        if setup_time > 10:
            logger.info("Trainable.setup took %.3f seconds", setup_time)

    # -- to override --
    def setup(self, config):
        pass

    def step(self):
        raise NotImplementedError

    def save_checkpoint(self, checkpoint_dir):
        return None

    def load_checkpoint(self, checkpoint):
        pass

    def reset_config(self, new_config):
        return False

    def cleanup(self):
        pass

    @classmethod
    def default_resource_request(cls, config):
        return None

    # -- the driver-facing side --
    @property
    def iteration(self):
        return self._iteration

    @property
    def training_iteration(self):
        return self._iteration

    @property
    def trial_id(self):
        return getattr(self._trial_info, "trial_id", "default")

    @property
    def trial_name(self):
        return getattr(self._trial_info, "trial_name", "default")

    @property
    def trial_resources(self):
        return getattr(self._trial_info, "resources", None)

    @property
    def logdir(self):
        return getattr(self._trial_info, "trial_dir", None)

    def get_config(self):
        return self.config

    def train(self):
        """One `step()`, with Ray's auto-filled fields."""
        start = time.time()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict, got "
                            f"{type(result).__name__}")
        result = dict(result)
        took = time.time() - start
        self._iteration += 1
        self._iterations_since_restore += 1
        self._time_total += took
        self._time_since_restore += took
        result.setdefault("time_this_iter_s", took)
        result.update(training_iteration=self._iteration, time_total_s=self._time_total,
                      time_since_restore=self._time_since_restore,
                      iterations_since_restore=self._iterations_since_restore)
        result.setdefault("done", False)
        return result

    def save(self, checkpoint_dir=None):
        """Writes a checkpoint into `checkpoint_dir` (a new temp dir if None); returns the dir."""
        import tempfile
        if checkpoint_dir is None:
            checkpoint_dir = tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(checkpoint_dir, exist_ok=True)
        state = self.save_checkpoint(checkpoint_dir)
        if isinstance(state, dict):
            with open(os.path.join(checkpoint_dir, _CHECKPOINT_DICT_FILE), "wb") as f:
                pickle.dump(state, f)
        elif state is not None and state != checkpoint_dir:
            raise ValueError("save_checkpoint must return None, a dict or its checkpoint_dir")
        return checkpoint_dir

    def restore(self, checkpoint_path, counters=None):
        path = getattr(checkpoint_path, "path", checkpoint_path)
        dict_file = os.path.join(path, _CHECKPOINT_DICT_FILE)
        if os.path.exists(dict_file):
            with open(dict_file, "rb") as f:
                self.load_checkpoint(pickle.load(f))
        else:
            self.load_checkpoint(path)
        if counters:
            self._iteration = counters.get("training_iteration", self._iteration)
            self._time_total = counters.get("time_total_s", self._time_total)
        self._restored = True
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0

    def reset(self, new_config, storage=None):
        """Reuse for another trial: True if `reset_config` accepted the new config."""
        self.config = new_config
        self._trial_info = storage or self._trial_info
        ok = self.reset_config(new_config)
        if ok:
            self._iteration = 0
            self._time_total = 0.0
            self._time_since_restore = 0.0
            self._iterations_since_restore = 0
        return ok

    def stop(self):
        self.cleanup()


def is_class_trainable(trainable):
    return inspect.isclass(trainable) and issubclass(trainable, Trainable)


def trainable_name(trainable):
    if isinstance(trainable, str):
        return trainable
    name = getattr(trainable, "__name__", None) or type(trainable).__name__
    return name


class PlacementGroupFactory:
    """Resources of a trial as bundles; the first bundle is the trial's own."""

    def __init__(self, bundles, strategy="PACK", *args, **kwargs):
        if not bundles:
            raise ValueError("a PlacementGroupFactory needs at least one bundle")
        self.bundles = [dict(b) for b in bundles]
        self.strategy = strategy

    @property
    def head_bundle(self):
        return self.bundles[0]

    def required_resources(self):
        total = {}
        for b in self.bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0) + v
        return total

    def __eq__(self, other):
        return isinstance(other, PlacementGroupFactory) and other.bundles == self.bundles

    def __repr__(self):
        return f"PlacementGroupFactory({self.bundles}, strategy={self.strategy!r})"


def normalize_resources(resources):
    """{"cpu": 2, "gpu": 1, "custom": 1} / PlacementGroupFactory -> {"CPU": 2, "GPU": 1, ...}."""
    if resources is None:
        return None
    if isinstance(resources, PlacementGroupFactory):
        resources = resources.required_resources()
    if not isinstance(resources, dict):
        raise TypeError(f"resources must be a dict or a PlacementGroupFactory, got {resources!r}")
    out = {}
    for key, value in resources.items():
        k = {"cpu": "CPU", "gpu": "GPU"}.get(key, key)
        if k in ("extra_cpu", "extra_gpu"):
            base = "CPU" if k == "extra_cpu" else "GPU"
            out[base] = out.get(base, 0) + value
            continue
        out[k] = out.get(k, 0) + value
    out.setdefault("CPU", 1 if "GPU" not in out else 0)
    return out


def with_resources(trainable, resources):
    """The trainable with its per-trial resources attached ({"cpu": 2, "gpu": 1}, a
    PlacementGroupFactory, or a function of the config — called once, with the param space)."""
    if inspect.isclass(trainable):
        wrapped = type(trainable.__name__, (trainable,), {})
    else:
        @functools.wraps(trainable)
        def wrapped(*args, **kwargs):
            return trainable(*args, **kwargs)
    wrapped._zray_tune_resources = resources
    return wrapped


def resources_of(trainable, param_space=None):
    res = getattr(trainable, "_zray_tune_resources", None)
    if res is None and is_class_trainable(trainable):
        res = trainable.default_resource_request(param_space or {})
    if callable(res) and not isinstance(res, PlacementGroupFactory):
        res = res(param_space or {})
    return normalize_resources(res) or {"CPU": 1}


def placement_of(trainable, param_space=None):
    """The trial's PlacementGroupFactory when it asks for more than one bundle (a trial that
    starts actors of its own, as an RLlib algorithm does), else None: one actor is enough."""
    res = getattr(trainable, "_zray_tune_resources", None)
    if res is None and is_class_trainable(trainable):
        res = trainable.default_resource_request(param_space or {})
    if callable(res) and not isinstance(res, PlacementGroupFactory):
        res = res(param_space or {})
    if not isinstance(res, PlacementGroupFactory) or len(res.bundles) < 2:
        return None
    bundles = [normalize_resources(b) for b in res.bundles[:1]] + \
        [{{"cpu": "CPU", "gpu": "GPU"}.get(k, k): v for k, v in b.items()} for b in res.bundles[1:]]
    return PlacementGroupFactory(bundles, res.strategy)


def with_parameters(trainable, **kwargs):
    """Large objects go to the object store once; each trial gets them as extra arguments
    (`fn(config, **kwargs)`, or `setup(config, **kwargs)` of a Trainable)."""
    import zray
    refs = {name: zray.put(value) for name, value in kwargs.items()}
    if is_class_trainable(trainable):
        original_setup = trainable.setup

        def setup(self, config):
            return original_setup(self, config, **_fetch(refs))

        wrapped = type(trainable.__name__, (trainable,), {"setup": setup})
    else:
        def wrapped(config):
            return trainable(config, **_fetch(refs))
        functools.update_wrapper(wrapped, trainable)
        if hasattr(wrapped, "__wrapped__"):
            del wrapped.__wrapped__
    res = getattr(trainable, "_zray_tune_resources", None)
    if res is not None:
        wrapped._zray_tune_resources = res
    return wrapped


_param_cache = {}


def _fetch(refs):
    import zray
    out = {}
    for name, ref in refs.items():
        key = ref.hex() if hasattr(ref, "hex") else id(ref)
        if key not in _param_cache:
            _param_cache[key] = zray.get(ref)
        out[name] = _param_cache[key]
    return out
