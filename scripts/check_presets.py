"""Checks the model presets of step exports (`messages.preset`) against each
model's own upstream code, run here, not restated:

* `qwen2_5_vl`, `qwen3_vl`: the stored observation has the size qwen-vl-utils
  0.0.14's `smart_resize` gives with `fetch_image`'s defaults for
  `image_patch_size` 14 and 16 (vision_process.py lines 56–81, 100, 131–132);
  the assistant turn's tool call parses as the Qwen cookbooks parse it
  (`output_text.split('<tool_call>\\n')[1].split('\\n</tool_call>')[0]`) and
  its coordinate maps back to the event's pixel (Qwen2.5-VL: on the resized
  image; Qwen3-VL: `/ 1000 * width`), and the system prompt names the screen.
* `ui_tars`: ui-tars 0.5.1's own `parse_action_to_structure_output` and
  `parsing_response_to_pyautogui_code` (the package UI-TARS publishes) read
  every assistant turn, recover the thought, and put the click back on the
  event's pixel; its `smart_resize` gives the stored size.
* `opencua`: the `## Code:` section runs as Python against recording
  stand-ins for `pyautogui` and `computer` (OpenCUA's parser is not on PyPI)
  and clicks at the event's pixel on the 0–1 scale; `## Thought:` is the
  event's thought.

* the resize: every resized observation is within a mean absolute
  difference of 2 (per pixel and channel) of Pillow's `BICUBIC` resize of the
  original frame, the resample `fetch_image` uses.
* grounding (`messages.task: "grounding"`): ui-tars' parser puts every
  `ui_tars` answer on the event's pixel, under the `GROUNDING_DOUBAO` prompt;
  the Qwen answers' fenced `bbox_2d` lists, read as the cookbooks read them,
  scale back to the event's element box.

qwen-vl-utils imports torch and torchvision at module level (not in this
venv), so its arithmetic (constants and the four functions) is taken from
the installed file by `ast` and run as it is.

usage: check_presets.py NUSOMI_BIN STORE_DIR WORK_DIR
"""
import ast
import glob
import importlib.util
import json
import math
import pathlib
import re
import sys

from PIL import Image, ImageChops, ImageStat

from checks import check, export_create, listed_files_match

nusomi, store, work = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])


def qwen_vl_utils():
    """qwen_vl_utils.vision_process's resize arithmetic, run from its source."""
    path = pathlib.Path(importlib.util.find_spec("qwen_vl_utils").origin).parent / "vision_process.py"
    tree = ast.parse(path.read_text())
    keep = {"round_by_factor", "ceil_by_factor", "floor_by_factor", "smart_resize"}
    body = [n for n in tree.body
            if (isinstance(n, ast.FunctionDef) and n.name in keep)
            or (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets)
                and isinstance(n.value, (ast.Constant, ast.BinOp)))]
    ns = {"math": math, "Optional": object, "Tuple": tuple}
    from typing import Optional, Tuple
    ns.update(Optional=Optional, Tuple=Tuple)
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), ns)
    return ns


QVU = qwen_vl_utils()
check(QVU["IMAGE_MIN_TOKEN_NUM"] == 4 and QVU["IMAGE_MAX_TOKEN_NUM"] == 16384 and QVU["MAX_RATIO"] == 200,
      "qwen-vl-utils 0.0.14: the constants docs/steps.md pins")


def fetch_image_size(w, h, patch):
    """(width, height) as qwen_vl_utils.fetch_image resizes a w×h image."""
    factor = patch * QVU["SPATIAL_MERGE_SIZE"]
    rh, rw = QVU["smart_resize"](h, w, factor=factor,
                                 min_pixels=QVU["IMAGE_MIN_TOKEN_NUM"] * factor ** 2,
                                 max_pixels=QVU["IMAGE_MAX_TOKEN_NUM"] * factor ** 2)
    return rw, rh


def export(preset, extra=None, name=None):
    name = name or preset
    out = work / "presets" / name
    spec = {
        "workflow": ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"],
        "format": "jsonl",
        "unit": "step",
        "messages": {"preset": preset, **(extra or {})},
        "destination": {"kind": "local", "path": str(out)},
        "as_of": "2030-01-01T00:00:00Z",
    }
    spec_path = work / f"spec-preset-{name}.json"
    spec_path.write_text(json.dumps(spec))
    job = export_create(nusomi, store, spec_path)
    check(job["status"] == "completed", f"{preset}: step export completed")
    manifest = json.loads((out / "manifest.json").read_text())
    listed_files_match(out, manifest, preset)
    rows = [json.loads(line) for f in sorted(glob.glob(str(out / "*.jsonl")) + glob.glob(str(out / "**/*.jsonl"), recursive=True))
            for line in open(f)]
    rows = list({r["key"]: r for r in rows}.values())
    check(len(rows) == manifest["rows"], f"{preset}: {len(rows)} samples")
    return out, rows


def near(a, b, tol, what):
    if abs(a - b) > tol:
        sys.exit(f"FAIL: {what}: {a} is not within {tol} of {b}")


def stored_size(out, r):
    with Image.open(out / r["images"][-1]) as im:
        return im.size


# --- Qwen2.5-VL and Qwen3-VL
resized = {}
for preset, patch in [("qwen2_5_vl", 14), ("qwen3_vl", 16)]:
    out, rows = export(preset)
    resized[preset] = (out, rows)
    clicks = 0
    for r in rows:
        w, h = r["width"], r["height"]
        rw, rh = fetch_image_size(w, h, patch)
        if (r["image_width"], r["image_height"]) != (rw, rh) or stored_size(out, r) != (rw, rh):
            sys.exit(f"FAIL: {preset}: {r['key']}: {r['image_width']}x{r['image_height']} is not qwen-vl-utils' {rw}x{rh}")
        system, last = r["messages"][0]["content"], r["messages"][-1]["content"]
        screen = f"{rw}x{rh}" if preset == "qwen2_5_vl" else "1000x1000"
        if f"* The screen's resolution is {screen}." not in system:
            sys.exit(f"FAIL: {preset}: {r['key']}: the system prompt does not name the {screen} screen")
        call = json.loads(last.split("<tool_call>\n")[1].split("\n</tool_call>")[0])
        if call["name"] != "computer_use":
            sys.exit(f"FAIL: {preset}: {r['key']}: {call}")
        if call["arguments"]["action"] in ("left_click", "double_click", "right_click"):
            clicks += 1
            x, y = call["arguments"]["coordinate"]
            px = r["action_pixels"]
            if preset == "qwen2_5_vl":
                # OSWorld qwen25vl_agent: x * original_width / processed_width.
                near(x * w / rw, px["x"], w / rw + 0.5, f"{preset} {r['key']} x")
                near(y * h / rh, px["y"], h / rh + 0.5, f"{preset} {r['key']} y")
            else:
                near(x / 1000 * w, px["x"], w / 1000 + 0.5, f"{preset} {r['key']} x")
                near(y / 1000 * h, px["y"], h / 1000 + 0.5, f"{preset} {r['key']} y")
    check(clicks > 0, f"{preset}: sizes are qwen-vl-utils' (image_patch_size {patch}); "
                      f"{clicks} clicks parse as the cookbook parses them and land on the event's pixel")

# --- The resize itself: within a mean absolute difference of 2 of Pillow's
# BICUBIC, the resample qwen-vl-utils' fetch_image uses (`image.resize((w, h))`
# after `to_rgb`), on every observation of both exports.
orig_out, orig_rows = export("sharegpt")
originals = {r["key"]: orig_out / r["images"][-1] for r in orig_rows}
worst, total, images = 0.0, 0.0, 0
for preset, (out, rows) in resized.items():
    for r in rows:
        with Image.open(originals[r["key"]]) as src, Image.open(out / r["images"][-1]) as ours:
            want = src.convert("RGB").resize(ours.size, Image.BICUBIC)
            mad = sum(ImageStat.Stat(ImageChops.difference(want, ours.convert("RGB"))).mean) / 3
        if mad > 2:
            sys.exit(f"FAIL: {preset}: {r['key']}: resized observation is {mad:.3f} from Pillow's bicubic on average")
        worst, total, images = max(worst, mad), total + mad, images + 1
check(images > 0, f"resize: {images} observations within {worst:.3f} (mean {total / max(images, 1):.3f}) "
                  "of Pillow's BICUBIC per pixel and channel (at most 2)")

# --- UI-TARS-1.5, read by the ui-tars package's own parser.
from ui_tars import action_parser as tars  # noqa: E402
from ui_tars.prompt import COMPUTER_USE_DOUBAO  # noqa: E402

out, rows = export("ui_tars")
parsed_turns = clicks = thoughts = 0
for r in rows:
    task = r["instruction"] or r["workflow"].replace("_", " ")
    if r["messages"][1]["content"] != COMPUTER_USE_DOUBAO.format(language="English", instruction=task):
        sys.exit(f"FAIL: ui_tars: {r['key']}: the user prompt is not ui-tars' COMPUTER_USE_DOUBAO")
    w, h = r["width"], r["height"]
    rh, rw = tars.smart_resize(h, w)
    if (r["image_width"], r["image_height"]) != (rw, rh) or stored_size(out, r) != (rw, rh):
        sys.exit(f"FAIL: ui_tars: {r['key']}: {r['image_width']}x{r['image_height']} is not ui-tars' {rw}x{rh}")
    for t in r["messages"]:
        if t["role"] != "assistant":
            continue
        parsed = tars.parse_action_to_structure_output(
            t["content"], factor=1000, origin_resized_height=h, origin_resized_width=w, model_type="qwen25vl")
        parsed_turns += 1
        code = tars.parsing_response_to_pyautogui_code(parsed, h, w, scale_factor=1)
        if t is r["messages"][-1]:
            if r["thought"] is not None:
                thoughts += 1
                if parsed[0]["thought"] != r["thought"]:
                    sys.exit(f"FAIL: ui_tars: {r['key']}: thought {parsed[0]['thought']!r} != {r['thought']!r}")
            if r["action"]["type"] == "click":
                clicks += 1
                m = re.search(r"pyautogui\.click\(([\d.]+), ([\d.]+)", code)
                if not m:
                    sys.exit(f"FAIL: ui_tars: {r['key']}: no click in {code!r}")
                near(float(m.group(1)), r["action_pixels"]["x"], w / rw + 0.5, f"ui_tars {r['key']} x")
                near(float(m.group(2)), r["action_pixels"]["y"], h / rh + 0.5, f"ui_tars {r['key']} y")
check(parsed_turns > len(rows) and clicks > 0 and thoughts > 0,
      f"ui_tars: the prompt is ui-tars' COMPUTER_USE_DOUBAO; ui-tars' parser reads all {parsed_turns} assistant turns; {thoughts} thoughts come back, "
      f"{clicks} clicks land on the event's pixel; sizes are ui-tars' smart_resize")

# --- OpenCUA: run the code section.
out, rows = export("opencua")


class Recorder:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __getattr__(self, fn):
        return lambda *a, **k: self.calls.append((f"{self.name}.{fn}", a, k))


clicks = thoughts = 0
for r in rows:
    last = r["messages"][-1]["content"]
    m = re.search(r"## Code:\n(.*)\n$", last, re.S)
    if not m:
        sys.exit(f"FAIL: opencua: {r['key']}: no code section in {last!r}")
    calls = []
    exec(m.group(1), {"pyautogui": Recorder("pyautogui", calls), "computer": Recorder("computer", calls)})
    if not calls:
        sys.exit(f"FAIL: opencua: {r['key']}: {m.group(1)!r} calls nothing")
    if r["thought"] is not None:
        thoughts += 1
        if not last.startswith(f"## Thought:\n{r['thought']}\n\n## Action:\n"):
            sys.exit(f"FAIL: opencua: {r['key']}: {last!r}")
    if r["action"]["type"] == "click":
        clicks += 1
        fn, _, k = calls[0]
        if fn != "pyautogui.click" or not (0 <= k["x"] <= 1 and 0 <= k["y"] <= 1):
            sys.exit(f"FAIL: opencua: {r['key']}: {calls}")
        near(k["x"] * r["width"], r["action_pixels"]["x"], r["width"] / 20000 + 0.5, f"opencua {r['key']} x")
        near(k["y"] * r["height"], r["action_pixels"]["y"], r["height"] / 20000 + 0.5, f"opencua {r['key']} y")
check(clicks > 0 and thoughts > 0,
      f"opencua: every code section runs as Python; {clicks} clicks on the 0–1 scale land on the event's pixel, "
      f"{thoughts} thoughts under ## Thought:")

# --- Grounding samples (messages.task "grounding"): each answer read as the
# model family's own code reads it lands on the event's click or its element.
from ui_tars.prompt import GROUNDING_DOUBAO  # noqa: E402


def grounding(preset, answer):
    return export(preset, {"task": "grounding", "answer": answer}, f"{preset}-grounding-{answer}")[1]


def fenced_json(text):
    # The Qwen cookbooks' parse_json: the text between ```json and ```.
    return json.loads(text.split("```json")[1].split("```")[0])


rows = grounding("ui_tars", "point")
for r in rows:
    user = r["messages"][1]["content"]
    if not user.startswith(GROUNDING_DOUBAO.split("{instruction}")[0]) or r["target_name"] not in user:
        sys.exit(f"FAIL: ui_tars grounding: {r['key']}: {user!r}")
    w, h = r["width"], r["height"]
    rh, rw = tars.smart_resize(h, w)
    parsed = tars.parse_action_to_structure_output(
        r["messages"][-1]["content"], factor=1000, origin_resized_height=h, origin_resized_width=w,
        model_type="qwen25vl")
    code = tars.parsing_response_to_pyautogui_code(parsed, h, w, scale_factor=1)
    m = re.search(r"pyautogui\.(?:click|doubleClick|rightClick)\(([\d.]+), ([\d.]+)", code)
    if not m:
        sys.exit(f"FAIL: ui_tars grounding: {r['key']}: {code!r}")
    near(float(m.group(1)), r["action_pixels"]["x"], w / rw + 0.5, f"ui_tars grounding {r['key']} x")
    near(float(m.group(2)), r["action_pixels"]["y"], h / rh + 0.5, f"ui_tars grounding {r['key']} y")
check(len(rows) > 0, f"ui_tars grounding: {len(rows)} samples prompt with GROUNDING_DOUBAO; ui-tars' parser "
                     "puts every answer on the event's pixel")

for preset, patch in [("qwen2_5_vl", 14), ("qwen3_vl", 16)]:
    rows = grounding(preset, "box")
    for r in rows:
        w, h = r["width"], r["height"]
        rw, rh = fetch_image_size(w, h, patch)
        (found,) = fenced_json(r["messages"][-1]["content"])
        x1, y1, x2, y2 = found["bbox_2d"]
        # The cookbooks' plot_bounding_boxes: bbox / input size * original
        # (Qwen2.5-VL: the resized size; Qwen3-VL: 1000).
        sx, sy = (w / rw, h / rh) if preset == "qwen2_5_vl" else (w / 1000, h / 1000)
        data = r["event"]["data"]
        ev = (json.loads(data) if isinstance(data, str) else data)["element"]["bbox"]
        for i, got in enumerate([x1, y1, x2, y2]):
            scale, size = (sx, w) if i % 2 == 0 else (sy, h)
            near(got * scale, min(ev[i], size - 1), scale + 0.5, f"{preset} grounding {r['key']} bbox[{i}]")
        if found["label"] != r["target_name"]:
            sys.exit(f"FAIL: {preset} grounding: {r['key']}: label {found['label']!r}")
    check(len(rows) > 0, f"{preset} grounding: {len(rows)} boxes parse as the cookbook parses them and "
                         "scale back to the event's element box")

# Qwen2.5-VL's points answer, read as its cookbook's decode_xml_points reads it
# (xml.etree.ElementTree: x1/y1 attributes, alt, the text).
import xml.etree.ElementTree as ET  # noqa: E402

rows = grounding("qwen2_5_vl", "point")
for r in rows:
    w, h = r["width"], r["height"]
    rw, rh = fetch_image_size(w, h, 14)
    root = ET.fromstring(r["messages"][-1]["content"])
    x, y = float(root.attrib["x1"]), float(root.attrib["y1"])
    near(x * w / rw, r["action_pixels"]["x"], w / rw + 0.5, f"qwen2_5_vl point {r['key']} x")
    near(y * h / rh, r["action_pixels"]["y"], h / rh + 0.5, f"qwen2_5_vl point {r['key']} y")
    if root.attrib["alt"] != r["target_name"] or root.text != r["target_name"]:
        sys.exit(f"FAIL: qwen2_5_vl point: {r['key']}: {root.attrib} {root.text!r}")
check(len(rows) > 0, f"qwen2_5_vl grounding: {len(rows)} <points> answers parse as XML and land on the event's pixel")
