"""The numpy twin of a torch model, for acting in env runners without torch.

An env runner steps its envs with a batched numpy forward pass: for small MLPs this is several
times faster than torch per call and keeps torch out of the runner processes entirely.

A `NumpyNet` is a trunk (every layer followed by the activation) and one or more heads (every
layer but the last followed by the activation); `combine` says how heads become outputs:
"single" (one head: the outputs) or "dueling" (Q = V + A - mean(A)).
"""
from dataclasses import dataclass

import numpy as np


def _tanh(x):
    return np.tanh(x, out=x)


def _relu(x):
    return np.maximum(x, 0.0, out=x)


def _linear(x):
    return x


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


ACTIVATIONS = {"tanh": _tanh, "relu": _relu, "linear": _linear, None: _linear,
               "swish": _silu, "silu": _silu, "elu": _elu}


@dataclass
class NumpyNet:
    trunk: list          # [(W (in, out), b (out,)), ...]
    heads: list          # [[(W, b), ...], ...]
    activation: str = "tanh"
    combine: str = "single"

    def forward(self, x):
        act = ACTIVATIONS[self.activation]
        for w, b in self.trunk:
            x = act(x @ w + b)
        outs = []
        for head in self.heads:
            h = x
            for i, (w, b) in enumerate(head):
                h = h @ w + b
                if i < len(head) - 1:
                    h = act(h)
            outs.append(h)
        if self.combine == "single":
            return outs[0]
        if self.combine == "dueling":
            adv, value = outs
            return value + adv - adv.mean(axis=1, keepdims=True)
        raise ValueError(f"unknown combine {self.combine!r}")


def sample_categorical(logits, rng):
    """One action per row of `logits`, drawn with `rng`."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(logits))[:, None] * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), logits.shape[1] - 1)


def sample_gaussian(dist_inputs, rng):
    mean, log_std = np.split(dist_inputs, 2, axis=1)
    return mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(mean.dtype)


def greedy(dist_inputs, action_kind):
    if action_kind == "discrete":
        return dist_inputs.argmax(axis=1)
    return np.split(dist_inputs, 2, axis=1)[0]
