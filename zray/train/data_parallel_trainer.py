"""DataParallelTrainer: run one training function on every worker of a group."""
from .backend import BackendConfig
from .checkpoint import Checkpoint
from .config import RunConfig, ScalingConfig
from .controller import Controller


class DataParallelTrainer:
    """Runs `train_loop_per_worker` (taking no argument or `train_loop_config`) on
    `scaling_config.num_workers` workers; fit() returns a Result or raises
    TrainingFailedError."""

    _backend_config_cls = BackendConfig

    def __init__(self, train_loop_per_worker, *, train_loop_config=None, backend_config=None,
                 scaling_config=None, run_config=None, datasets=None, dataset_config=None,
                 resume_from_checkpoint=None, metadata=None):
        if not callable(train_loop_per_worker):
            raise TypeError("train_loop_per_worker must be callable, got "
                            f"{type(train_loop_per_worker).__name__}")
        if resume_from_checkpoint is not None and not isinstance(resume_from_checkpoint,
                                                                 Checkpoint):
            raise TypeError("resume_from_checkpoint must be a zray.train.Checkpoint")
        if datasets is not None and not isinstance(datasets, dict):
            raise TypeError("datasets must be a dict of name -> dataset")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.backend_config = backend_config or self._backend_config_cls()
        self.scaling_config = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.datasets = datasets or {}
        self.dataset_config = dataset_config
        self.resume_from_checkpoint = resume_from_checkpoint
        self.metadata = metadata or {}

    def as_trainable(self):
        """This trainer as a Tune trainable (what `Tuner(trainer, ...)` runs per trial)."""
        from .tune_trial import trainer_trainable
        return trainer_trainable(self)

    def fit(self):
        return Controller(train_fn=self.train_loop_per_worker,
                          train_config=self.train_loop_config,
                          backend_config=self.backend_config,
                          scaling_config=self.scaling_config, run_config=self.run_config,
                          datasets=self.datasets,
                          resume_from_checkpoint=self.resume_from_checkpoint,
                          metadata=self.metadata).fit()
