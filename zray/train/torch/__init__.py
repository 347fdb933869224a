"""zray.train.torch: TorchTrainer, TorchConfig and the loop helpers (prepare_model,
prepare_data_loader, get_device, enable_reproducibility). Importing it imports torch.

Importing it also asks the cluster's zygotes for torch (TorchConfig.preload_modules): before
zray.init(), the node init() starts imports torch for its workers from its start, in parallel
with the rest of init() and whatever the script does before fit(), which would otherwise wait
for that import (~3-4 CPU-s). ZRAY_TRAIN_PRELOAD_ON_IMPORT=0 leaves it to fit().
"""
import os
from .config import TorchConfig
from .torch_trainer import TorchTrainer
from .train_loop_utils import (enable_reproducibility, get_device, get_devices,
                               prepare_data_loader, prepare_model)

if os.environ.get("ZRAY_TRAIN_PRELOAD_ON_IMPORT", "1") != "0":
    from zray.util.worker_preload import preload_worker_modules as _preload
    _preload(TorchConfig.preload_modules)

__all__ = ["TorchConfig", "TorchTrainer", "enable_reproducibility", "get_device",
           "get_devices", "prepare_data_loader", "prepare_model"]
