"""The floor a resized step export is compared with in benches/resize.sh: the
same work done by Pillow (libjpeg-turbo, libpng, zlib, its own BICUBIC) with
nothing else — read the frames from a plain step export's Parquet, decode,
resize each to the size the resized export gave it, encode (JPEG quality 90,
PNG compress_level 1), SHA-256, write one file each — in one process per core.

usage: pillow_resize_floor.py PLAIN_EXPORT_DIR RESIZED_EXPORT_DIR OUT_DIR
"""
import glob
import hashlib
import io
import os
import pathlib
import sys
from concurrent.futures import ProcessPoolExecutor

import pyarrow.parquet as pq
from PIL import Image

plain, resized, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])


def table(d, cols):
    return pq.ParquetDataset(sorted(glob.glob(f"{d}/**/*.parquet", recursive=True))).read(columns=cols)


def work(args):
    i, data, fmt, size = args
    with Image.open(io.BytesIO(data)) as im:
        small = im.convert("RGB").resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    if fmt == "png":
        small.save(buf, "PNG", compress_level=1)
    else:
        small.save(buf, "JPEG", quality=90)
    b = buf.getvalue()
    (out / f"{i:06}.{fmt}").write_bytes(b)
    return hashlib.sha256(b).hexdigest()


if __name__ == "__main__":
    out.mkdir(parents=True, exist_ok=True)
    sizes = {k: (w, h) for k, w, h in zip(*table(resized, ["key", "image_width", "image_height"]).to_pydict().values())}
    t = table(plain, ["key", "image", "image_format"]).to_pydict()
    jobs = [(i, img["bytes"], fmt, sizes[k]) for i, (k, img, fmt) in enumerate(zip(t["key"], t["image"], t["image_format"]))]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        digests = list(pool.map(work, jobs, chunksize=8))
    print(f"{len(digests)} frames resized")
