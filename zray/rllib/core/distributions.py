"""Action distributions over a policy head's outputs (torch): log-probabilities, entropy and
KL(old || new) for a categorical (logits) and a diagonal Gaussian (mean, log-std)."""
import math

import torch
import torch.nn.functional as F

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Categorical:
    def __init__(self, logits):
        self.logp_all = F.log_softmax(logits, dim=-1)

    def logp(self, actions):
        return self.logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self):
        return -(self.logp_all.exp() * self.logp_all).sum(-1)

    def kl(self, other):
        """KL(self || other)."""
        return (self.logp_all.exp() * (self.logp_all - other.logp_all)).sum(-1)


class DiagGaussian:
    def __init__(self, inputs):
        self.mean, self.log_std = torch.chunk(inputs, 2, dim=-1)

    def logp(self, actions):
        z = (actions - self.mean) / self.log_std.exp()
        return (-0.5 * z * z - self.log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self):
        return (self.log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    def kl(self, other):
        var, ovar = (2 * self.log_std).exp(), (2 * other.log_std).exp()
        return (other.log_std - self.log_std
                + (var + (self.mean - other.mean) ** 2) / (2 * ovar) - 0.5).sum(-1)


def distribution(action_kind, inputs):
    return Categorical(inputs) if action_kind == "discrete" else DiagGaussian(inputs)
