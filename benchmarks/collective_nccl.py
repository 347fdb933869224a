"""The nccl backend beside raw CuPy NCCL on one GPU (issue 12's GPU targets).

    python benchmarks/collective_nccl.py [--min 4096] [--max 268435456] [--tiny]
                                         [--formation-rounds 3]

Without CuPy's NCCL and a GPU it prints why and exits 0 (the CI smoke test runs it so).
With one GPU:
  allreduce     world size 1 on GPU 0, float32, in place; zray's `col.allreduce` (the
                group's own stream, the call returns once it synchronized) in blocks
                alternating with raw CuPy NCCL `allReduce` + `stream.synchronize()` on a
                communicator of its own (the same work a call of zray's does), median block
                per row (collective.py's alternation), in nccl-tests' columns; the target
                is raw / zray >= 0.95
  formation     create_collective_group of one fresh zray actor (num_gpus=1, CuPy imported
                beforehand), then its first allreduce, and the same on that actor again, in
                ms (collective.py's run_formation); the target is the first operation
                <= 1 s after the group's creation (Ray: 3.6 s, ray#61073)
NCCL refuses two ranks on one GPU, so a one-GPU machine measures world size 1 only.
"""
import argparse
import sys

from collective import (_time_interleaved, formation_table,  # this folder's benchmark
                        run_formation, sizes)


def time_allreduce(size_list, tiny):
    """{nbytes: (zray s/call, raw s/call)}: the median block of each, alternated."""
    import cupy
    from cupy.cuda import nccl
    import zray.util.collective as col
    col.init_collective_group(1, 0, "nccl", "bench-nccl")
    out = {}
    try:
        with cupy.cuda.Device(0):
            stream = cupy.cuda.Stream(non_blocking=True)
            comm = nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)

            def raw(x):
                comm.allReduce(x.data.ptr, x.data.ptr, x.size, nccl.NCCL_FLOAT32,
                               nccl.NCCL_SUM, stream.ptr)
                stream.synchronize()

            for nbytes in size_list:
                ours, theirs = _time_interleaved(
                    [lambda x: col.allreduce(x, "bench-nccl"), raw], lambda: None, nbytes,
                    tiny, zeros=lambda n: cupy.zeros(n, cupy.float32))
                out[nbytes] = (ours[0], theirs[0])
            comm.destroy()
    finally:
        col.destroy_collective_group("bench-nccl")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min", type=int, default=4096)
    ap.add_argument("--max", type=int, default=256 << 20)
    ap.add_argument("--tiny", action="store_true", help="one small size, 2 calls")
    ap.add_argument("--formation-rounds", type=int, default=3)
    a = ap.parse_args(argv)
    from zray.util.collective.backends.nccl import nccl_available
    if not nccl_available():
        print("# zray-nccl: n/a (no CuPy with NCCL and a GPU here)")
        return 0
    if a.tiny:
        a.min = a.max = 4096
        a.formation_rounds = min(a.formation_rounds, 1)
    res = time_allreduce(sizes(a.min, a.max), a.tiny)
    print("# allreduce, nccl, world size 1, GPU 0, float32, in place (median block)")
    print(f"{'bytes':>12} {'zray(us)':>12} {'raw(us)':>12} {'algbw(GB/s)':>12} "
          f"{'busbw(GB/s)':>12} {'raw/zray':>10}")
    for nbytes, (ours, raw) in res.items():
        # busbw = algbw * 2(n-1)/n is 0 for one rank: printed as nccl-tests does
        print(f"{nbytes:>12} {ours * 1e6:>12.1f} {raw * 1e6:>12.1f} "
              f"{nbytes / ours / 1e9:>12.3f} {0.0:>12.3f} {raw / ours:>10.2f}")
    if a.formation_rounds > 0:
        f = run_formation(a.formation_rounds, world=1, backend="nccl", array_module="cupy",
                          num_gpus=1)
        print(formation_table(f, "zray's nccl backend"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
