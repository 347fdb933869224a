"""DQN's learner: TD updates against a target network.

    a*      = argmax_a Q_online(s', a)   (double_q)   or argmax_a Q_target(s', a)
    y       = r + gamma * (1 - terminated) * Q_target(s', a*)
    loss    = mean(huber(Q_online(s, a) - y))            (td_error_loss_fn="huber"; or "mse")
    target <- tau * online + (1 - tau) * target          (every target_network_update_freq
                                                          sampled env steps; tau=1: a copy)
"""
import copy

import torch
import torch.nn.functional as F

from ...core.learner import Learner, torch_threads


def td_targets(rewards, terminateds, next_q_online, next_q_target, gamma, double_q):
    """The TD targets y (no gradient) for a batch."""
    if double_q:
        best = next_q_online.argmax(dim=1, keepdim=True)
    else:
        best = next_q_target.argmax(dim=1, keepdim=True)
    next_value = next_q_target.gather(1, best).squeeze(1)
    return rewards + gamma * (1.0 - terminateds.float()) * next_value


def td_loss(q_selected, targets, loss_fn="huber"):
    if loss_fn == "huber":
        return F.smooth_l1_loss(q_selected, targets)
    if loss_fn == "mse":
        return F.mse_loss(q_selected, targets)
    raise ValueError(f"td_error_loss_fn must be 'huber' or 'mse', got {loss_fn!r}")


def soft_update(target, online, tau):
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            if tau >= 1.0:
                t.copy_(o)
            else:
                t.mul_(1.0 - tau).add_(o, alpha=tau)


class DQNLearner(Learner):
    def __init__(self, module, config):
        super().__init__(module, config)
        self.target = copy.deepcopy(module)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.num_target_updates = 0

    def update(self, batch):
        c = self.config
        with torch_threads(self.num_threads):
            t = {k: torch.from_numpy(v) for k, v in batch.items()}
            q = self.module.q_values(t["obs"])
            q_sel = q.gather(1, t["actions"].long().unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                next_obs = t["next_obs"]
                online_next = self.module.q_values(next_obs) if c.double_q else None
                y = td_targets(t["rewards"], t["terminateds"], online_next,
                               self.target.q_values(next_obs), float(c.gamma),
                               bool(c.double_q))
            loss = td_loss(q_sel, y, c.td_error_loss_fn)
            norm = self._apply_gradients(loss)
            self.weights_changed()
            with torch.no_grad():
                td = (q_sel - y).abs()
                return {"qf_loss": float(loss.detach()), "total_loss": float(loss.detach()),
                        "qf_mean": float(q_sel.mean()), "qf_max": float(q_sel.max()),
                        "qf_min": float(q_sel.min()), "td_error_mean": float(td.mean()),
                        "gradients_default_optimizer_global_norm": norm}

    def update_target(self):
        soft_update(self.target, self.module, float(self.config.tau))
        self.num_target_updates += 1

    def get_state(self):
        return {**super().get_state(), "target": self.target.get_state(),
                "num_target_updates": self.num_target_updates}

    def set_state(self, state):
        super().set_state(state)
        self.target.set_state(state["target"])
        self.num_target_updates = state["num_target_updates"]
