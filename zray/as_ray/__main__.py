"""python -m zray.as_ray app.py [args]   (or: python -m zray.as_ray -m package.module [args])

Runs a Ray program unchanged on zray: `ray` is installed as an alias of zray, then the program
runs as `__main__` with sys.argv as if it had been started directly; its exit code is ours.
"""
import runpy
import sys

USAGE = "usage: python -m zray.as_ray (app.py | -m module) [args...]"


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    from . import install_as_ray
    install_as_ray()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    path = argv[0]
    import os
    if not os.path.exists(path):
        print(f"zray.as_ray: no such file: {path}", file=sys.stderr)
        return 2
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
