"""An experiment's directory: `<storage_path>/<name>/` holding tuner.pkl, the experiment state
(experiment_state-<date>.json, written atomically) and one directory per trial."""
import base64
import glob
import json
import logging
import os
import time

import cloudpickle

logger = logging.getLogger("zray.tune")

TUNER_FILE = "tuner.pkl"
STATE_GLOB = "experiment_state-*.json"


def default_experiment_name(trainable_name):
    return f"{trainable_name}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def atomic_write(path, data, mode="w"):
    tmp = f"{path}.tmp"
    with open(tmp, mode) as f:
        f.write(data)
    # No fsync: a killed driver loses nothing the kernel has; only a power loss would, and
    # the state is rewritten every few seconds.
    os.replace(tmp, path)


class ExperimentStorage:
    def __init__(self, experiment_path):
        self.path = experiment_path
        os.makedirs(self.path, exist_ok=True)
        existing = latest_state_file(experiment_path)
        self.state_file = existing or os.path.join(
            experiment_path, f"experiment_state-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json")

    def save_tuner(self, tuner_state):
        atomic_write(os.path.join(self.path, TUNER_FILE), cloudpickle.dumps(tuner_state), "wb")

    def save_state(self, controller_state, summary):
        blob = base64.b64encode(cloudpickle.dumps(controller_state)).decode("ascii")
        data = json.dumps({"trial_data": summary, "runner_data": {
            "timestamp": time.time(), "state": blob}}, default=str)
        atomic_write(self.state_file, data)


def latest_state_file(experiment_path):
    files = sorted(glob.glob(os.path.join(experiment_path, STATE_GLOB)))
    return files[-1] if files else None


def load_state(experiment_path):
    path = latest_state_file(experiment_path)
    if path is None:
        return None
    with open(path) as f:
        data = json.load(f)
    return cloudpickle.loads(base64.b64decode(data["runner_data"]["state"]))


def load_tuner(experiment_path):
    with open(os.path.join(experiment_path, TUNER_FILE), "rb") as f:
        return cloudpickle.load(f)


def can_restore(experiment_path):
    return os.path.exists(os.path.join(os.fspath(experiment_path), TUNER_FILE))
