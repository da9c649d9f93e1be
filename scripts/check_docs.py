"""Runs the guide's examples: every ```console block of README.md and
docs/*.md (each `$ ` line a command, run by sh in a folder holding
./nusomi-demo, the demo `nusomi demo` leaves; the lines after it its
expected output, where a line `...` matches any lines and `[..]` any text
within a line), and every ```json block that is an export spec (it has
`workflow` and `format`) through `nusomi export plan`. A changed flag,
field or output fails here.

usage: check_docs.py NUSOMI_BIN DEMO_DIR WORK_DIR
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

from checks import check

nusomi, demo, work = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve(), pathlib.Path(sys.argv[3])
root = pathlib.Path(__file__).resolve().parent.parent
pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
cwd = work / "docs-run"
shutil.rmtree(cwd, ignore_errors=True)
cwd.mkdir(parents=True)
shutil.copytree(demo, cwd / "nusomi-demo", symlinks=True)  # commands may change it
bin_dir = cwd / "bin"
bin_dir.mkdir()
(bin_dir / "nusomi").symlink_to(nusomi)
env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NO_COLOR": "1"}


def blocks(text, lang):
    """(line number, body) of each fenced block of `lang`."""
    return [(text[: m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(rf"(?m)^```{lang}\n(.*?)^```", text, re.S)]


def matches(expected, actual):
    """Whether `actual` lines fit `expected` lines (`...`, `[..]`)."""
    def line_ok(e, a):
        parts = [re.escape(p) for p in e.split("[..]")]
        return re.fullmatch(".*".join(parts), a) is not None

    def go(i, j):
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "...":
            return any(go(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and line_ok(expected[i], actual[j]) and go(i + 1, j + 1)

    return go(0, 0)


commands = specs = 0
for page in pages:
    text = page.read_text()
    name = page.relative_to(root)
    for line, body in blocks(text, "console"):
        steps = []
        for l in body.splitlines():
            if l.startswith("$ "):
                steps.append((l[2:], []))
            elif steps:
                steps[-1][1].append(l.rstrip())
        for cmd, expected in steps:
            done = subprocess.run(["sh", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
            actual = [l.rstrip() for l in (done.stdout + done.stderr).splitlines()]
            while expected and expected[-1] == "":
                expected.pop()
            fails = expected[:1] == ["? failed"]
            ok = (done.returncode != 0) if fails else (done.returncode == 0)
            check(ok and matches(expected[1:] if fails else expected, actual),
                  f"{name}:{line}: `{cmd}` prints what the page shows"
                  + ("" if ok and matches(expected[1:] if fails else expected, actual)
                     else f"\n--- page:\n" + "\n".join(expected) + "\n--- actual (exit " + str(done.returncode) + "):\n" + "\n".join(actual)))
            commands += 1
    for line, body in blocks(text, "json"):
        try:
            spec = json.loads(body)
        except json.JSONDecodeError:
            continue
        if not (isinstance(spec, dict) and "workflow" in spec and "format" in spec):
            continue
        path = work / "docs-spec.json"
        path.write_text(body)
        done = subprocess.run([str(nusomi), "export", "plan", "--store", str(demo / "store"), str(path)],
                              capture_output=True, text=True, timeout=300)
        check(done.returncode == 0, f"{name}:{line}: the spec is valid and plans on the demo store"
              + ("" if done.returncode == 0 else f"\n{done.stderr}"))
        specs += 1
check(commands > 0 and specs > 0, f"docs: {commands} commands and {specs} specs of {len(pages)} pages run")
