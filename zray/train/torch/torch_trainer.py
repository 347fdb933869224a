"""TorchTrainer: DataParallelTrainer with torch.distributed set up in every worker."""
from ..data_parallel_trainer import DataParallelTrainer
from .config import TorchConfig


class TorchTrainer(DataParallelTrainer):
    _backend_config_cls = TorchConfig

    def __init__(self, train_loop_per_worker, *, train_loop_config=None, torch_config=None,
                 scaling_config=None, run_config=None, datasets=None, dataset_config=None,
                 resume_from_checkpoint=None, metadata=None):
        if torch_config is not None and not isinstance(torch_config, TorchConfig):
            raise TypeError("torch_config must be a zray.train.torch.TorchConfig")
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config,
                         backend_config=torch_config or TorchConfig(),
                         scaling_config=scaling_config, run_config=run_config,
                         datasets=datasets, dataset_config=dataset_config,
                         resume_from_checkpoint=resume_from_checkpoint, metadata=metadata)
