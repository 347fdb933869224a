"""zray.train.torch: TorchTrainer, TorchConfig and the loop helpers (prepare_model,
prepare_data_loader, get_device, enable_reproducibility). Importing it imports torch."""
from .config import TorchConfig
from .torch_trainer import TorchTrainer
from .train_loop_utils import (enable_reproducibility, get_device, get_devices,
                               prepare_data_loader, prepare_model)

__all__ = ["TorchConfig", "TorchTrainer", "enable_reproducibility", "get_device",
           "get_devices", "prepare_data_loader", "prepare_model"]
