"""The README's first example is a Ray program; it must run unchanged with `import zray as ray`."""
import os
import re
import subprocess
import sys
import time

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_first_example_runs_in_about_one_second():
    with open(README) as f:
        text = f.read()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    assert "import zray as ray" in code
    code = code.replace("ray.init()", "ray.init(num_cpus=4)\nimport time as _t; _start = _t.time()")
    code += "\nprint('elapsed', _t.time() - _start)\n"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "4"
    elapsed = float(lines[1].split()[1])
    assert elapsed < 2.5, f"four 1-second tasks took {elapsed:.2f}s: they did not run in parallel"
    assert time.monotonic() - start < 30
