"""Drives `nusomi view` in a real browser (headless Debian chromium through
selenium + chromium-driver) and checks what a person sees: the session list
filters to the sessions SQL selects, a session page shows every frame and
which ones a sampling keeps, each click is drawn at the event's pixel (read
from a screenshot), an export of each format shows its samples (a step
export as its chat), a flipped byte shows in the verify view, and bad input
gets a page that says what is wrong. Screenshots stay in WORK/viewer/.

usage: check_viewer.py NUSOMI_BIN STORE_DIR WORK_DIR
"""
import io
import json
import pathlib
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from checks import check, export_create

nusomi, store, work = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]) / "viewer"
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)


def sql(query):
    out = subprocess.run([nusomi, "sql", "--store", store, "--format", "json", query],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def export(fmt, name, **extra):
    out = work / "exports" / name
    spec = {"workflow": [w["workflow"] for w in sql("SELECT DISTINCT workflow FROM sessions")],
            "format": fmt, "frame_sampling": {"mode": "event_only", "keep_action_frames": True},
            "destination": {"kind": "local", "path": str(out)}, "shard_size_bytes": 400_000,
            "as_of": "2030-01-01T00:00:00Z", **extra}
    path = work / f"spec-{name}.json"
    path.write_text(json.dumps(spec))
    export_create(nusomi, store, path)
    return out, json.loads((out / "manifest.json").read_text())


exports = {fmt: export(fmt, fmt) for fmt in ["parquet", "arrow", "jsonl", "webdataset", "mds"]}
exports["steps"] = export("jsonl", "steps", unit="step", coordinates="normalized_1000",
                          messages={"preset": "sharegpt", "action_syntax": "pyautogui"})
CONVENTIONS = {"pixels": "pixels", "normalized": "normalized", "normalized_1000": "normalized_1000",
               "smart_resize": {"smart_resize": {"factor": 28, "min_pixels": 3136, "max_pixels": 200704}}}
step_exports = {name: export("parquet" if name == "pixels" else "jsonl", f"steps-{name}", unit="step", coordinates=conv)
                for name, conv in CONVENTIONS.items()}

viewer = subprocess.Popen([nusomi, "view", store, "--no-open", "--export", str(exports["parquet"][0])],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
try:
    line = viewer.stdout.readline().strip()
    check(line.startswith("nusomi view: http://127.0.0.1:"), f"nusomi view prints its URL: {line}")
    url = line.split(" ", 2)[2]
    base = url.split("/?")[0]

    try:
        urllib.request.urlopen(base + "/sessions", timeout=10)
        check(False, "a request without the token is refused")
    except urllib.error.HTTPError as e:
        check(e.code == 401 and "token" in e.read().decode(), "a request without the token gets 401 and a page saying why")

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--force-device-scale-factor=1",
                "--window-size=1600,1200", "--disable-dev-shm-usage"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(120)

    def shot(name):
        png = driver.get_screenshot_as_png()
        (work / f"{name}.png").write_bytes(png)
        return Image.open(io.BytesIO(png)).convert("RGB")

    def page(path):
        driver.get(base + path)
        return driver

    try:
        driver.get(url)
        check(driver.current_url.endswith("/sessions"), "the token URL opens the session list")
        all_ids = [r["session_id"] for r in sql("SELECT session_id FROM sessions ORDER BY session_id")]
        rows = [e.get_attribute("data-session") for e in driver.find_elements(By.CSS_SELECTOR, "tr.session")]
        check(rows == all_ids, f"the list shows every session in order ({len(rows)})")
        shot("sessions")

        pick = sql("SELECT workflow, outcome FROM sessions ORDER BY session_id LIMIT 1")[0]
        want = [r["session_id"] for r in sql(
            f"SELECT session_id FROM sessions WHERE workflow = '{pick['workflow']}' "
            f"AND outcome = '{pick['outcome']}' ORDER BY session_id")]
        page(f"/sessions?workflow={pick['workflow']}&outcome={pick['outcome']}")
        rows = [e.get_attribute("data-session") for e in driver.find_elements(By.CSS_SELECTOR, "tr.session")]
        check(rows == want and 0 < len(rows) < len(all_ids), f"workflow + outcome filters select {rows}")
        shown_sql = driver.find_element(By.ID, "sql").get_attribute("textContent")
        check("s.workflow IN" in shown_sql and "s.outcome" in shown_sql, "the page shows the SQL the filters compile to")
        page("/sessions?since=yesterday&min_duration_ms=-5")
        err = driver.find_element(By.ID, "error").text
        check("filter.since" in err and "filter.min_duration_ms" in err, f"bad filters are named by field path: {err!r}")

        # A frame with a click, and the pixel the event names.
        frames = sql("SELECT session_id, frame_idx, width, height, events FROM frames WHERE is_action_frame ORDER BY session_id, frame_idx")
        clicks = [(f, json.loads(e["data"])) for f in frames for e in f["events"]
                  if e["action"] and e["type"] == "click" and "x" in json.loads(e["data"] or "{}")]
        check(clicks, f"the demo store has click events ({len(clicks)})")
        (f, data) = clicks[0]
        sid, idx = f["session_id"], f["frame_idx"]
        n_frames = sql(f"SELECT frame_count FROM sessions WHERE session_id = '{sid}'")[0]["frame_count"]
        kept = sql(f"SELECT count(*) AS n FROM frames WHERE session_id = '{sid}' AND sample_event_only(is_event_frame, is_action_frame, true)")[0]["n"]
        page(f"/sessions/{sid}")
        tiles = driver.find_elements(By.CSS_SELECTOR, ".frame")
        check(len(tiles) == n_frames, f"the session page shows all {n_frames} frames")
        check(len(driver.find_elements(By.CSS_SELECTOR, ".frame.kept")) == kept, f"event_only keeps {kept}, as the export's SQL does")
        tile = driver.find_element(By.CSS_SELECTOR, f'.frame[data-frame="{idx}"] img')
        driver.execute_script("arguments[0].scrollIntoView()", tile)
        width = driver.execute_async_script(
            "const [img, done] = arguments; img.decode().then(() => done(img.naturalWidth), () => done(0));", tile)
        check(width == 200, f"the timeline's thumbnail is made 200 px wide by the server ({width})")
        scale = 200 / f["width"]
        rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", tile)
        im = shot("session")
        px = im.getpixel((round(rect[0] + data["x"] * scale), round(rect[1] + data["y"] * scale)))
        check(px[0] > 200 and px[1] < 60 and px[2] > 200, f"the click is drawn on its thumbnail at the scaled point: {px}")
        page(f"/sessions/{sid}?sampling=every_n_ms&interval_ms=2000&keep_action_frames=false")
        kept2 = sql(f"SELECT count(*) AS n FROM frames WHERE session_id = '{sid}' AND sample_every_n_ms(t_ms, prev_t_ms, 2000, is_action_frame, false)")[0]["n"]
        check(len(driver.find_elements(By.CSS_SELECTOR, ".frame.kept")) == kept2, f"every_n_ms 2000 keeps {kept2}")

        page(f"/sessions/{sid}/frames/{idx}")
        driver.set_window_size(f["width"] + 200, f["height"] + 500)
        img = driver.find_element(By.ID, "frame")
        driver.execute_script("arguments[0].scrollIntoView()", img)
        check(driver.execute_script("return arguments[0].naturalWidth", img) == f["width"], "the frame image loads at its size")
        rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", img)
        im = shot("frame-click")
        px = im.getpixel((round(rect[0] + data["x"]), round(rect[1] + data["y"])))
        check(px[0] > 200 and px[1] < 60 and px[2] > 200, f"the click is drawn at ({data['x']}, {data['y']}): pixel {px} is magenta")
        ring = im.getpixel((round(rect[0] + data["x"] + 40), round(rect[1] + data["y"] + 40)))
        check(not (ring[0] > 200 and ring[1] < 60 and ring[2] > 200), f"and nowhere near it: {ring}")

        for fmt, (path, m) in exports.items():
            page(f"/export?location={path}")
            summary = driver.find_element(By.ID, "summary").text
            check(f"rows {m['rows']}" in summary and m["digest"] in summary, f"{fmt}: the manifest page shows rows and digest")
            check(len(driver.find_elements(By.CSS_SELECTOR, "#shards tr")) == len(m["shards"]) + 1, f"{fmt}: every shard listed")
            page(f"/export/shards/0?location={path}")
            samples = driver.find_elements(By.CSS_SELECTOR, "section.sample")
            check(len(samples) == min(10, m["shards"][0]["rows"]), f"{fmt}: shard 0 shows {len(samples)} samples")
            images = driver.find_elements(By.CSS_SELECTOR, "img.sample-image")
            check(images, f"{fmt}: the samples show their images")
            driver.execute_script("arguments[0].scrollIntoView()", images[0])
            shown = driver.execute_async_script(
                "const [img, done] = arguments; img.decode().then(() => done(img.naturalWidth), () => done(0));",
                images[0])
            check(shown > 0, f"{fmt}: the browser decodes the first sample image ({shown} px wide)")
            cookie = f"nusomi_view={driver.get_cookie('nusomi_view')['value']}"
            for img in images:
                got = urllib.request.urlopen(urllib.request.Request(img.get_attribute("src"), headers={"Cookie": cookie}), timeout=30)
                Image.open(io.BytesIO(got.read())).verify()
            check(True, f"{fmt}: all {len(images)} sample images on the page are images")
            if fmt == "steps":
                turns = driver.find_elements(By.CSS_SELECTOR, ".chat .turn")
                check(len(turns) >= 2 * len(samples), f"steps: each sample renders as its chat ({len(turns)} turns)")
            shot(f"export-{fmt}")

        # A step sample's action, converted back from each convention, lands
        # on the event's original pixel (scaled to the stored observation).
        field_of = ("const rows = [...arguments[0].closest('section').querySelectorAll('tr')];"
                    "const f = {}; for (const r of rows) { f[r.querySelector('th').textContent] = r.querySelector('td').textContent; }"
                    "return f;")
        for name, (path, m) in step_exports.items():
            page(f"/export/shards/0?location={path}")
            figs = [f for f in driver.find_elements(By.CSS_SELECTOR, "figure.step-action")
                    if f.find_elements(By.CSS_SELECTOR, 'g[data-kind="click"]')]
            check(figs, f"steps {name}: click samples are drawn on their observation")
            fig = figs[0]
            fields = driver.execute_script(field_of, fig)
            original = json.loads(fields["action_pixels"])
            w, h, iw, ih = (float(fields[k]) for k in ["width", "height", "image_width", "image_height"])
            want = (original["x"] * iw / w, original["y"] * ih / h)
            got = (float(fig.get_attribute("data-x")), float(fig.get_attribute("data-y")))
            check(fig.get_attribute("data-convention") == name and abs(got[0] - want[0]) <= 1.0 and abs(got[1] - want[1]) <= 1.0,
                  f"steps {name}: the action comes back to the event's pixel {want} (drawn at {got})")
            if name == "smart_resize":
                check((iw, ih) != (w, h), f"steps smart_resize: the observation is the resized one ({iw:.0f}x{ih:.0f} of {w:.0f}x{h:.0f})")
            img = fig.find_element(By.CSS_SELECTOR, "img.observation")
            driver.execute_script("arguments[0].scrollIntoView()", img)
            driver.execute_async_script("const [img, done] = arguments; img.decode().then(() => done(1), () => done(0));", img)
            rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", img)
            im = shot(f"step-{name}")
            px = im.getpixel((round(rect[0] + got[0]), round(rect[1] + got[1])))
            check(px[0] > 200 and px[1] < 60 and px[2] > 200, f"steps {name}: the screenshot has the click's dot there: {px}")

        path, m = exports["parquet"]
        page(f"/export/verify?location={path}")
        check("intact" in driver.find_element(By.ID, "intact").text, "verify: the intact export says so")
        flipped = work / "exports" / "flipped"
        shutil.copytree(path, flipped)
        victim = flipped / m["shards"][0]["path"]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        page(f"/export/verify?location={flipped}")
        text = driver.find_element(By.ID, "mismatches").text
        check(m["shards"][0]["path"] in text, f"verify: the flipped shard is named: {text!r}")
        shot("verify-flipped")

        for path, status, words in [
            (f"/export?location={work}/no-such-export", 404, "no export at"),
            ("/sessions/ses_no_such_session", 404, "no session ses_no_such_session"),
            ("/sessions/bad'id", 404, "is not a session id"),
            (f"/export/shards/99?location={exports['parquet'][0]}", 404, "there is no shard 99"),
        ]:
            page(path)
            msg = driver.find_element(By.ID, "error").text
            check(words in msg, f"{path}: a page that says what is wrong: {msg!r}")
        req = urllib.request.Request(base + "/sessions/ses_no_such_session", headers={"Cookie": driver.get_cookie("nusomi_view") and f"nusomi_view={driver.get_cookie('nusomi_view')['value']}" or ""})
        try:
            urllib.request.urlopen(req, timeout=10)
            check(False, "an unknown session is a 404")
        except urllib.error.HTTPError as e:
            check(e.code == 404, "an unknown session is a 404 with its page")
    finally:
        driver.quit()
finally:
    viewer.terminate()
    viewer.wait(timeout=30)
print(f"viewer: all checks passed; screenshots in {work}")
