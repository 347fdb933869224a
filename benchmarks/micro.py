"""`python -m benchmarks.micro [--duration S] [--filter SUBSTRING] [--json]`: the same rows as
`zray microbenchmark` (one implementation, in zray/scripts/microbenchmark.py)."""
import argparse
import sys

from .common import microbenchmark


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro",
                                     description="Ray's microbenchmark rows, measured for zray")
    microbenchmark.add_arguments(parser)
    parser.add_argument("--runtime", default="zray", help="module to measure: zray (default) or ray")
    args = parser.parse_args(argv)
    return microbenchmark.run(args, args.runtime)


if __name__ == "__main__":
    sys.exit(main())
