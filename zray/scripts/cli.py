"""The `zray` command. Commands grow with the issues: start/stop/status/list come with the mesh."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="zray", description="zray: Ray's model on a ZeroMQ mesh")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    bench = sub.add_parser("microbenchmark", help="measure the core on this machine")
    bench.add_argument("--duration", type=float, default=2.0, help="seconds per row")
    bench.add_argument("--num-cpus", type=int, default=None)
    bench.add_argument("--json", action="store_true", help="print rows as JSON lines")
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__
        print(f"zray {__version__}")
        return 0
    if args.command == "microbenchmark":
        from .microbenchmark import run
        return run(duration=args.duration, num_cpus=args.num_cpus, as_json=args.json)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
