"""zray.train.torch: TorchTrainer, TorchConfig and the loop helpers (prepare_model,
prepare_data_loader, get_device, enable_reproducibility). Importing it imports torch.

Imported before zray.init(), it also asks for the workers' torch (TorchConfig.preload_modules):
the node init() starts imports it from its start, in parallel with the rest of init() and
whatever the script does before fit(), which would otherwise wait for that import (~3-4 CPU-s).
Imported later (or in a worker), it asks nothing: fit() does. ZRAY_TRAIN_PRELOAD_ON_IMPORT=0
leaves it to fit() always.
"""
import os
from .config import TorchConfig
from .torch_trainer import TorchTrainer
from .train_loop_utils import (enable_reproducibility, get_device, get_devices,
                               prepare_data_loader, prepare_model)



def _ask_for_torch_before_init():
    import zray
    if os.environ.get("ZRAY_TRAIN_PRELOAD_ON_IMPORT", "1") == "0" or zray.is_initialized():
        return        # initialized: fit() asks, once (each worker importing this must not)
    from zray.util.worker_preload import preload_worker_modules
    preload_worker_modules(TorchConfig.preload_modules)


_ask_for_torch_before_init()

__all__ = ["TorchConfig", "TorchTrainer", "enable_reproducibility", "get_device",
           "get_devices", "prepare_data_loader", "prepare_model"]
