"""The numpy twin of a torch model, for acting in env runners without torch.

An env runner steps its envs with a batched numpy forward pass: for small MLPs this is several
times faster than torch per call and keeps torch out of the runner processes entirely.

Per-step cost matters here: with one env a runner does one forward pass and one action draw
per env step, where numpy's per-call overhead (not arithmetic) dominates. So a single row goes
through the net as a 1-D vector (`np.dot` on vectors is the cheapest call), and a few rows of
logits are sampled in plain Python floats rather than with a dozen array operations.

A `NumpyNet` is a trunk (every layer followed by the activation) and one or more heads (every
layer but the last followed by the activation); `combine` says how heads become outputs:
"single" (one head: the outputs) or "dueling" (Q = V + A - mean(A)).
"""
from dataclasses import dataclass

import math

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
        """(N, in) -> (N, out); a 1-D input gives a 1-D output."""
        if x.ndim == 2 and x.shape[0] == 1:
            return self.forward(x[0])[None]     # vector-matrix products are the cheaper call
        if self.combine == "single":
            plan = self.__dict__.get("_plan")
            if plan is None:
                plan = self._plan = self._chain()
            dot = np.dot
            for w, b, act in plan:
                x = dot(x, w) + b
                if act is not None:
                    x = act(x)
            return x
        if self.combine == "dueling":
            act = ACTIVATIONS[self.activation]
            for w, b in self.trunk:
                x = act(np.dot(x, w) + b)
            adv, value = (self._head(x, head, act) for head in self.heads)
            return value + adv - adv.mean(axis=-1, keepdims=True)
        raise ValueError(f"unknown combine {self.combine!r}")

    def _chain(self):
        """The one-head net as a flat list of (W, b, activation or None): a plain loop over it
        is measurably cheaper per call than walking trunk and heads."""
        act = ACTIVATIONS[self.activation]
        act = None if act is _linear else act
        (head,) = self.heads
        return ([(w, b, act) for w, b in self.trunk]
                + [(w, b, act if i < len(head) - 1 else None) for i, (w, b) in enumerate(head)])

    @staticmethod
    def _head(x, head, act):
        for i, (w, b) in enumerate(head):
            x = np.dot(x, w) + b
            if i < len(head) - 1:
                x = act(x)
        return x

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_plan", None)     # a cache, rebuilt where the net is used
        return state


# Up to this many logits in all, rows are sampled in Python floats (cheaper than numpy calls).
_PY_SAMPLE_MAX = 64


def sample_categorical(logits, rng):
    """One action per row of `logits` (an int64 array), drawn with `rng`: one uniform u per row
    (`rng.random(rows)`, whichever path), the action the first index whose cumulative
    probability exceeds u."""
    if logits.size <= _PY_SAMPLE_MAX:
        return np.array(sample_categorical_list(logits, rng), np.int64)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(logits))[:, None] * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), logits.shape[1] - 1)


def sample_categorical_list(logits, rng, uniforms=None):
    """`sample_categorical` for a few rows, as a list of Python ints; `uniforms` (a list, one
    per row) are the draws `rng.random(rows)` would give, when the caller drew them ahead."""
    exp = math.exp
    out = []
    if uniforms is None:
        uniforms = rng.random(len(logits)).tolist()
    for row, u in zip(logits.tolist(), uniforms):
        top = max(row)
        probs = [exp(v - top) for v in row]
        threshold = u * sum(probs)
        action, last, cdf = 0, len(probs) - 1, probs[0]
        while action < last and cdf <= threshold:
            action += 1
            cdf += probs[action]
        out.append(action)
    return out


def sample_gaussian(dist_inputs, rng):
    mean, log_std = np.split(dist_inputs, 2, axis=1)
    return mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(mean.dtype)


def greedy(dist_inputs, action_kind):
    if action_kind == "discrete":
        return dist_inputs.argmax(axis=1)
    return np.split(dist_inputs, 2, axis=1)[0]
