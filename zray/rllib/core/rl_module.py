"""The torch models (RLModules) a learner trains.

`PPOTorchRLModule`: a policy net and a value net (or one shared encoder with two heads when
`vf_share_layers`). `DQNTorchRLModule`: a Q net, dueling or not. Both follow RLlib's RLModule
methods: `forward_inference`, `forward_exploration` and `forward_train` take a batch dict with
"obs" and return a dict ("action_dist_inputs", "vf_preds", "qf_preds"); `get_state` /
`set_state` move weights. `to_numpy_net()` exports the acting path for env runners.
"""
import math

import numpy as np
import torch
from torch import nn

from .numpy_net import NumpyNet

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity, None: nn.Identity,
                "swish": nn.SiLU, "silu": nn.SiLU, "elu": nn.ELU}

DEFAULT_MODEL_CONFIG = {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh",
                        "vf_share_layers": False}


def _check_activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"fcnet_activation must be one of {sorted(k for k in _ACTIVATIONS if k)}"
                         f", got {name!r}")
    return name


def _linear(n_in, n_out, gain):
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def _trunk(n_in, hiddens, activation):
    layers, gain = [], (math.sqrt(2) if activation in ("relu", "elu", "swish", "silu") else
                        (5 / 3 if activation == "tanh" else 1.0))
    for h in hiddens:
        layers += [_linear(n_in, h, gain), _ACTIVATIONS[activation]()]
        n_in = h
    return nn.Sequential(*layers), n_in


def _np_layers(seq):
    return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
            for m in seq if isinstance(m, nn.Linear)]


def _obs_tensor(batch):
    obs = batch["obs"] if isinstance(batch, dict) else batch
    if not isinstance(obs, torch.Tensor):
        obs = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    return obs.float()


class RLModule(nn.Module):
    """What RLlib's RLModule offers: forward_* methods and state as dicts."""

    def forward_inference(self, batch):
        with torch.no_grad():
            return self._forward(batch, train=False)

    def forward_exploration(self, batch):
        with torch.no_grad():
            return self._forward(batch, train=False)

    def forward_train(self, batch):
        return self._forward(batch, train=True)

    def forward(self, batch):
        return self._forward(batch, train=True)

    def get_state(self):
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}

    def set_state(self, state):
        self.load_state_dict(state)


class PPOTorchRLModule(RLModule):
    def __init__(self, obs_dim, action_spec, model_config):
        super().__init__()
        cfg = {**DEFAULT_MODEL_CONFIG, **(model_config or {})}
        self.activation = _check_activation(cfg["fcnet_activation"])
        hiddens = list(cfg["fcnet_hiddens"])
        self.action_spec = action_spec
        self.vf_share_layers = bool(cfg["vf_share_layers"])
        self.pi_encoder, n = _trunk(obs_dim, hiddens, self.activation)
        self.pi_head = _linear(n, action_spec.dist_inputs, 0.01)
        if self.vf_share_layers:
            self.vf_encoder = None
        else:
            self.vf_encoder, n = _trunk(obs_dim, hiddens, self.activation)
        self.vf_head = _linear(n, 1, 1.0)

    def _forward(self, batch, train):
        obs = _obs_tensor(batch)
        z = self.pi_encoder(obs)
        out = {"action_dist_inputs": self.pi_head(z)}
        if train:
            vz = z if self.vf_share_layers else self.vf_encoder(obs)
            out["vf_preds"] = self.vf_head(vz).squeeze(-1)
        return out

    def compute_values(self, batch):
        obs = _obs_tensor(batch)
        vz = self.pi_encoder(obs) if self.vf_share_layers else self.vf_encoder(obs)
        return self.vf_head(vz).squeeze(-1)

    def to_numpy_net(self):
        return NumpyNet(_np_layers(self.pi_encoder), [_np_layers([self.pi_head])],
                        self.activation, "single")


class DQNTorchRLModule(RLModule):
    def __init__(self, obs_dim, action_spec, model_config, dueling=True, hiddens=(256,)):
        super().__init__()
        if action_spec.kind != "discrete":
            raise ValueError("DQN needs a Discrete action space")
        cfg = {**DEFAULT_MODEL_CONFIG, **(model_config or {})}
        self.activation = _check_activation(cfg["fcnet_activation"])
        self.action_spec = action_spec
        self.dueling = bool(dueling)
        self.encoder, n = _trunk(obs_dim, list(cfg["fcnet_hiddens"]), self.activation)
        self.adv_head = self._head(n, list(hiddens), action_spec.n)
        self.value_head = self._head(n, list(hiddens), 1) if self.dueling else None

    def _head(self, n_in, hiddens, n_out):
        seq, n = _trunk(n_in, hiddens, self.activation)
        return nn.Sequential(*seq, _linear(n, n_out, 1.0))

    def q_values(self, obs):
        z = self.encoder(obs)
        adv = self.adv_head(z)
        if not self.dueling:
            return adv
        return self.value_head(z) + adv - adv.mean(dim=1, keepdim=True)

    def _forward(self, batch, train):
        q = self.q_values(_obs_tensor(batch))
        return {"qf_preds": q, "action_dist_inputs": q, "actions": q.argmax(dim=1)}

    def to_numpy_net(self):
        heads = [_np_layers(self.adv_head)]
        if self.dueling:
            heads.append(_np_layers(self.value_head))
        return NumpyNet(_np_layers(self.encoder), heads, self.activation,
                        "dueling" if self.dueling else "single")
