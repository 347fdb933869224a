"""The fixed cost of TorchTrainer.fit(): several fits of a trivial loop in one cluster.

    python benchmarks/train_fit.py [--fits 3] [--workers 2] [--num-cpus 2]

Each fit: a 2-worker TorchTrainer (gloo) whose loop reports 3 times; the loop itself takes
milliseconds, so the figure is the start of the workers (importing torch in each, unless the
node's zygote already imported it: zray.train asks every node for it, see docs/train.md) and
the process group. Prints one line per fit and a JSON line {"fit_s": [...]}.
"""
import argparse
import json
import time


def loop(config):
    import torch
    import zray.train
    for i in range(3):
        zray.train.report({"i": i, "s": float(torch.ones(4).sum())})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fits", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--num-cpus", type=int, default=2)
    args = p.parse_args()
    import zray
    from zray.train import ScalingConfig
    from zray.train.torch import TorchTrainer
    zray.init(num_cpus=args.num_cpus)
    times = []
    try:
        for n in range(args.fits):
            t0 = time.perf_counter()
            result = TorchTrainer(loop, scaling_config=ScalingConfig(
                num_workers=args.workers)).fit()
            times.append(time.perf_counter() - t0)
            assert result.metrics["i"] == 2, result.metrics
            print(f"fit {n + 1}: {times[-1]:.2f} s", flush=True)
    finally:
        zray.shutdown()
    print(json.dumps({"fit_s": [round(t, 3) for t in times]}), flush=True)


if __name__ == "__main__":
    main()
