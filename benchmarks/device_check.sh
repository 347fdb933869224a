#!/usr/bin/env bash
# The collectives' GPU checks (issue 12) in one short run on a lent device machine (the
# `device` tool; see docs/collectives.md, "The nccl figures"). Not yet run on a device: no
# session of this project has been lent one so far.
#
# The device image has Python 3.12 with CuPy (cupy-cuda13x, nvidia-nccl-cu13), torch, numpy,
# cloudpickle and psutil, and no network: zray's one missing dependency, pyzmq, travels as a
# wheel. Once, here, in the repo's root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl pyzmq
# then: run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=480)
# What it prints comes back in the reply; the logs come back under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/zray-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi -L
python3 -c "import cupy, zmq; print('cupy', cupy.__version__, 'pyzmq', zmq.__version__)" || exit 1
# zray's C extensions for this interpreter (the tree that travels holds none for 3.12)
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_collective_nccl.py \
    2>&1 | tee "$OUT/nccl_tests.log"
timeout 300 python3 benchmarks/collective_nccl.py 2>&1 | tee "$OUT/nccl_bench.log"
