"""The README's "From Python" examples run as written, against the demo
folder `nusomi demo` leaves (./nusomi-demo)."""

import os
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_examples_run(demo_store, tmp_path):
    text = README.read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one Python block with the three examples"
    (tmp_path / "nusomi-demo").symlink_to(pathlib.Path(demo_store).parent)
    done = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "workflow" in done.stdout and "frames" in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith("True"), done.stdout
