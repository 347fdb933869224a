"""The parts every learner shares: a module, an Adam optimizer, gradient clipping, and the
numpy twin of the module handed to env runners (rebuilt only after an update)."""
import contextlib
import math

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


class Adam:
    """Adam (Kingma & Ba), as torch.optim.Adam computes it for dense gradients.

    Our own, because the first `torch.optim` optimizer of a process imports torch._dynamo
    (seconds), which alone would break the 1 s budget of `build_algo()`."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), betas, float(eps), \
            float(weight_decay)
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad if not self.weight_decay else p.grad.add(p, alpha=self.weight_decay)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bc1)

    def state_dict(self):
        return {"t": self.t, "m": [x.clone() for x in self.m], "v": [x.clone() for x in self.v],
                "lr": self.lr}

    def load_state_dict(self, state):
        self.t, self.lr = state["t"], state["lr"]
        for dst, src in zip(self.m + self.v, state["m"] + state["v"]):
            dst.copy_(src)


class Learner:
    def __init__(self, module, config):
        self.module = module
        self.config = config
        opts = {k: v for k, v in dict(config.optimizer or {}).items()
                if k in ("betas", "eps", "weight_decay")}
        self.optimizer = Adam(module.parameters(), lr=float(config.lr), **opts)
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
