"""PPO on CartPole-v1: zray.rllib vs RLlib 2.60 vs Stable-Baselines3, side by side.

For each system and seed, a fresh process trains PPO until the mean return of the last 100
episodes reaches the target (450) or the env-step budget runs out, and reports the wall time
(from just before `build_algo()` / the SB3 model's construction, imports and `init` excluded),
the env steps sampled by then, and how long building the algorithm took. zray and RLlib run the
same hyperparameters (HYPERPARAMS); SB3 runs its own defaults (`PPO("MlpPolicy", env)`: one
env, 2048-step rollouts, 10 epochs of 64-sample minibatches). Then each framework's sampling
rate with one env runner is measured (for zray also the runner process's CPU time per env step,
which load on a shared machine skews far less). The table shows medians over the seeds and
ratios.

    python benchmarks/rllib.py                            # 3 seeds, all three systems
    python benchmarks/rllib.py --only zray --seeds 0      # one run
    python benchmarks/rllib.py --tiny --json              # smoke size, one JSON document

RLlib runs under --ray-python (default /opt/rayvenv/bin/python); a system that cannot run
(not installed) is reported as skipped with the reason.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"
RUN_TIMEOUT_S = 600

# The PPO setup zray and RLlib share (RLlib's names).
HYPERPARAMS = dict(num_env_runners=2, num_envs_per_env_runner=4, train_batch_size=1024,
                   minibatch_size=128, num_epochs=6, lr=1e-3, gamma=0.99, lambda_=0.95,
                   clip_param=0.2, vf_clip_param=1e6, vf_loss_coeff=0.5, entropy_coeff=0.0,
                   kl_coeff=0.0, grad_clip=0.5, fcnet_hiddens=[64, 64], fcnet_activation="tanh")


def _ppo_config(PPOConfig, hp, seed):
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=hp["num_env_runners"],
                         num_envs_per_env_runner=hp["num_envs_per_env_runner"])
            .training(train_batch_size=hp["train_batch_size"],
                      minibatch_size=hp["minibatch_size"], num_epochs=hp["num_epochs"],
                      lr=hp["lr"], gamma=hp["gamma"], lambda_=hp["lambda_"],
                      clip_param=hp["clip_param"], vf_clip_param=hp["vf_clip_param"],
                      vf_loss_coeff=hp["vf_loss_coeff"], entropy_coeff=hp["entropy_coeff"],
                      kl_coeff=hp["kl_coeff"], grad_clip=hp["grad_clip"])
            .rl_module(model_config={"fcnet_hiddens": hp["fcnet_hiddens"],
                                     "fcnet_activation": hp["fcnet_activation"],
                                     "vf_share_layers": False})
            .debugging(seed=seed))


def _train_until(algo, target, max_steps, start, build_s):
    ret, steps, iters = float("nan"), 0, 0
    while steps < max_steps:
        result = algo.train()
        iters += 1
        ret = result["env_runners"].get("episode_return_mean", float("nan"))
        steps = int(result.get("num_env_steps_sampled_lifetime")
                    or result["env_runners"].get("num_env_steps_sampled_lifetime", 0))
        if ret == ret and ret >= target:
            break
    return {"wall_s": time.perf_counter() - start, "env_steps": steps, "return": ret,
            "reached": bool(ret == ret and ret >= target), "iterations": iters,
            "build_s": build_s}


def _sample_rate(sample, steps, cpu_s=None):
    """Env steps per second of `sample`; with `cpu_s` (the sampling process's CPU seconds so
    far) also (rate, CPU microseconds per env step), which load on a shared machine skews far
    less than the rate."""
    sample(min(steps, 1000))     # warm up: the first call starts the envs
    cpu = cpu_s() if cpu_s else None
    t = time.perf_counter()
    n = sample(steps)
    rate = n / (time.perf_counter() - t)
    return rate if cpu_s is None else (rate, (cpu_s() - cpu) / n * 1e6)


# -- one run per process ------------------------------------------------------------------------
def run_zray(seed, target, max_steps, hp, sample_steps):
    sys.path.insert(0, REPO)
    import zray
    from zray.rllib.algorithms.ppo import PPOConfig
    zray.init(num_cpus=max(2, hp["num_env_runners"]))
    config = _ppo_config(PPOConfig, hp, seed)
    start = time.perf_counter()
    algo = config.build_algo()
    out = _train_until(algo, target, max_steps, start, time.perf_counter() - start)
    algo.stop()
    if sample_steps:
        from zray.rllib.env.env_runner_group import EnvRunnerGroup
        from zray.rllib.env_registry import env_creator_for
        net = algo.learner.numpy_net()
        for num_envs in (1, 8):
            group = EnvRunnerGroup(env_creator_for("CartPole-v1"), {}, 1, num_envs, seed,
                                   "ppo")
            per_call = max(1, 1000 // num_envs)

            def sample(n, group=group, num_envs=num_envs, per_call=per_call):
                done = 0
                while done < n:
                    done += sum(f.env_steps for f in group.sample(per_call, net))
                return done
            group.wait_ready(120)
            runner = group.remote[0]
            rate, cpu_us = _sample_rate(sample, sample_steps, lambda: zray.get(
                runner.process_cpu_s.remote(), timeout=60))
            out[f"sample_steps_per_s_{num_envs}env"] = rate
            out[f"sample_cpu_us_per_step_{num_envs}env"] = cpu_us
            group.stop()
    zray.shutdown()
    return out


def run_rllib(seed, target, max_steps, hp, sample_steps):
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    ray.init(num_cpus=max(2, hp["num_env_runners"]), include_dashboard=False,
             log_to_driver=False)
    config = _ppo_config(PPOConfig, hp, seed)
    start = time.perf_counter()
    algo = config.build_algo()
    out = _train_until(algo, target, max_steps, start, time.perf_counter() - start)
    algo.stop()
    if sample_steps:
        for num_envs in (1, 8):
            one = (_ppo_config(PPOConfig, hp, seed)
                   .env_runners(num_env_runners=1, num_envs_per_env_runner=num_envs))
            a = one.build_algo()

            def sample(n, a=a):
                done = 0
                while done < n:
                    eps = a.env_runner_group.foreach_env_runner(
                        lambda r: sum(len(e) for e in r.sample(num_timesteps=1000)),
                        local_env_runner=False)
                    done += sum(eps)
                return done
            out[f"sample_steps_per_s_{num_envs}env"] = _sample_rate(sample, sample_steps)
            a.stop()
    ray.shutdown()
    return out


def run_sb3(seed, target, max_steps, hp, sample_steps):
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    torch.set_num_threads(1)

    class StopAt(BaseCallback):
        def _on_step(self):
            buf = self.model.ep_info_buffer
            return not (len(buf) > 0 and np.mean([e["r"] for e in buf]) >= target)

    start = time.perf_counter()
    model = PPO("MlpPolicy", "CartPole-v1", seed=seed, verbose=0, device="cpu")
    build_s = time.perf_counter() - start
    model.learn(total_timesteps=max_steps, callback=StopAt())
    buf = model.ep_info_buffer
    ret = float(np.mean([e["r"] for e in buf])) if buf else float("nan")
    out = {"wall_s": time.perf_counter() - start, "env_steps": int(model.num_timesteps),
           "return": ret, "reached": ret >= target, "iterations": None, "build_s": build_s}
    if sample_steps:
        env = model.get_env()
        obs = env.reset()

        def sample(n):
            nonlocal obs
            for _ in range(n):
                with torch.no_grad():
                    action, _ = model.policy.predict(obs, deterministic=False)
                obs, _, _, _ = env.step(action)
            return n
        out["sample_steps_per_s_1env"] = _sample_rate(sample, sample_steps)
    return out


RUNNERS = {"zray": run_zray, "rllib": run_rllib, "sb3": run_sb3}


# -- the driver ---------------------------------------------------------------------------------
def _one(system, python, seed, args, sample_steps):
    cmd = [python, HERE, "--worker", system, "--seeds", str(seed), "--target", str(args.target),
           "--max-steps", str(args.max_steps), "--sample-steps", str(sample_steps)]
    if args.tiny:
        cmd.append("--tiny")
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env,
                           cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {RUN_TIMEOUT_S} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr or p.stdout)[-1500:]}
    return json.loads(lines[-1])


def _median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="zray,rllib,sb3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--target", type=float, default=450.0)
    ap.add_argument("--max-steps", type=int, default=300_000)
    ap.add_argument("--sample-steps", type=int, default=20_000)
    ap.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON)
    ap.add_argument("--tiny", action="store_true", help="smoke size: tiny budget, one seed")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    hp = dict(HYPERPARAMS)
    if args.tiny:
        hp.update(train_batch_size=200, num_epochs=1, fcnet_hiddens=[16], num_env_runners=1)
    seeds = [int(s) for s in args.seeds.split(",")]

    if args.worker:
        out = RUNNERS[args.worker](seeds[0], args.target, args.max_steps, hp, args.sample_steps)
        print(json.dumps(out))
        return 0

    if args.tiny:
        args.max_steps, seeds = min(args.max_steps, 400), seeds[:1]
    systems = [s for s in args.only.split(",") if s]
    report = {"target": args.target, "seeds": seeds, "hyperparams": hp, "systems": {}}
    for system in systems:
        python = args.ray_python if system == "rllib" else sys.executable
        if system == "rllib" and not os.path.exists(python):
            report["systems"][system] = {"skipped": f"{python} does not exist"}
            continue
        runs = []
        for i, seed in enumerate(seeds):
            runs.append(_one(system, python, seed, args, args.sample_steps if i == 0 else 0))
            if "error" in runs[-1]:
                break
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            report["systems"][system] = {"skipped": errors[0]}
            continue
        report["systems"][system] = {
            "runs": runs, "wall_s": _median(runs, "wall_s"),
            "env_steps": _median(runs, "env_steps"), "build_s": _median(runs, "build_s"),
            "reached": sum(bool(r["reached"]) for r in runs),
            **{k: runs[0][k] for k in runs[0] if k.startswith(("sample_steps_per_s",
                                                                "sample_cpu_us"))}}
    z = report["systems"].get("zray", {})
    for other in ("rllib", "sb3"):
        o = report["systems"].get(other, {})
        if z.get("wall_s") and o.get("wall_s"):
            report[f"wall_ratio_{other}_over_zray"] = o["wall_s"] / z["wall_s"]
            report[f"steps_ratio_{other}_over_zray"] = o["env_steps"] / z["env_steps"]
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"PPO on CartPole-v1 to mean return {args.target:g}, median of seeds {seeds}")
    print(f"{'system':8} {'wall s':>8} {'env steps':>10} {'reached':>8} {'build s':>8} "
          f"{'sample/s 1 env':>15} {'sample/s 8 envs':>16}")
    for system, r in report["systems"].items():
        if "skipped" in r:
            print(f"{system:8} skipped: {r['skipped'].strip().splitlines()[-1][:100]}")
            continue
        fmt = lambda v, f: format(v, f) if v is not None else "-"   # noqa: E731
        print(f"{system:8} {fmt(r['wall_s'], '8.1f')} {fmt(r['env_steps'], '10.0f')} "
              f"{r['reached']:>5}/{len(r['runs'])} {fmt(r['build_s'], '8.2f')} "
              f"{fmt(r.get('sample_steps_per_s_1env'), '15.0f')} "
              f"{fmt(r.get('sample_steps_per_s_8env'), '16.0f')}")
    for system, r in report["systems"].items():
        cpu = [f"{r[f'sample_cpu_us_per_step_{k}env']:.1f} us ({k} env{'s' * (k > 1)})"
               for k in (1, 8) if r.get(f"sample_cpu_us_per_step_{k}env") is not None]
        if cpu:
            print(f"{system}: env runner CPU per env step: {', '.join(cpu)}; "
                  f"load average {os.getloadavg()[0]:.1f}")
    for k, v in report.items():
        if k.startswith(("wall_ratio", "steps_ratio")):
            print(f"{k}: {v:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
