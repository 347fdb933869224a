"""The parts every learner shares: a module, an Adam optimizer, gradient clipping, and the
numpy twin of the module handed to env runners (rebuilt only after an update)."""
import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n):
    """Run torch with `n` intra-op threads (small models are fastest with 1), then restore."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def clip_gradients(params, grad_clip, grad_clip_by):
    """Clip in place; the global norm before clipping (RLlib reports it)."""
    params = [p for p in params if p.grad is not None]
    if grad_clip_by == "value" and grad_clip is not None:
        torch.nn.utils.clip_grad_value_(params, grad_clip)
    norm = torch.nn.utils.clip_grad_norm_(
        params, float("inf") if grad_clip is None or grad_clip_by == "value" else grad_clip)
    return float(norm)


class Learner:
    def __init__(self, module, config):
        self.module = module
        self.config = config
        self.optimizer = torch.optim.Adam(module.parameters(), lr=float(config.lr),
                                          **dict(config.optimizer or {}))
        self._net = None
        self.num_threads = 1 if int(config.num_cpus_per_learner or 1) <= 1 else None

    def numpy_net(self):
        if self._net is None:
            self._net = self.module.to_numpy_net()
        return self._net

    def weights_changed(self):
        self._net = None

    def _apply_gradients(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(self.module.parameters(), self.config.grad_clip,
                              self.config.grad_clip_by)
        self.optimizer.step()
        return norm

    def num_trainable_parameters(self):
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def get_state(self):
        return {"module": self.module.get_state(), "optimizer": self.optimizer.state_dict()}

    def set_state(self, state):
        self.module.set_state(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.weights_changed()
