"""LazyModule: heavy libraries (numpy) imported on first use, once, from any thread."""

from __future__ import annotations

import subprocess
import sys


def test_a_lazy_module_is_imported_on_first_use_once_even_from_threads_at_once() -> None:
    code = """
import sys, threading
from jetpack.lazy import LazyModule
colorsys = LazyModule("colorsys")
assert "colorsys" not in sys.modules, "imported before use"
found, start = [], threading.Barrier(8)
def use():
    start.wait()
    found.append(colorsys.rgb_to_hsv)
threads = [threading.Thread(target=use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
assert len(found) == 8 and len(set(found)) == 1 and found[0] is sys.modules["colorsys"].rgb_to_hsv
print(repr(colorsys))
"""
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "<lazy module 'colorsys' (imported)>"
