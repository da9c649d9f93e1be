"""Creates a blob container on Azurite through the REST API, signed with
Shared Key and the emulator's well-known account key (no Azure SDK needed).
Usage: azurite_container.py http://127.0.0.1:10000/devstoreaccount1 NAME"""
import base64, hashlib, hmac, sys, time, urllib.error, urllib.request
from email.utils import formatdate

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ACCOUNT = "devstoreaccount1"


def create(base: str, name: str) -> int:
    date = formatdate(usegmt=True)
    version = "2021-08-06"
    path = base.split("://", 1)[1].split("/", 1)[1]  # devstoreaccount1
    ctype = "application/octet-stream"  # urllib would add a form type otherwise
    to_sign = "\n".join(["PUT", "", "", "", "", ctype, "", "", "", "", "", "",
                         f"x-ms-date:{date}", f"x-ms-version:{version}",
                         f"/{ACCOUNT}/{path}/{name}\nrestype:container"])
    sig = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
    req = urllib.request.Request(f"{base}/{name}?restype=container", method="PUT", data=b"", headers={
        "x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {ACCOUNT}:{sig}",
        "Content-Length": "0", "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        if e.code == 409:  # already there
            return 409
        raise SystemExit(f"create container {name}: HTTP {e.code}: {e.read()[:300]!r}")


if __name__ == "__main__":
    for attempt in range(50):
        try:
            print("container", sys.argv[2], "->", create(sys.argv[1], sys.argv[2]))
            break
        except (urllib.error.URLError, ConnectionError) as e:
            if attempt == 49:
                raise
            time.sleep(0.2)
