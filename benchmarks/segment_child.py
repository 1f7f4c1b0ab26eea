"""One `segment` run in a fresh process, printing what it took as JSON (for the pipeline section).

    python -m benchmarks.segment_child SLIDE OUT MODEL [--ngff 0.5]
"""

from __future__ import annotations

import json
import sys
import time

start = time.perf_counter()
from biounet.pipeline.segment import segment  # noqa: E402

imported = time.perf_counter()
slide, out, model, *rest = sys.argv[1:]
options = {"ngff": rest[rest.index("--ngff") + 1]} if "--ngff" in rest else {}
result = segment(slide, out, model=model, overwrite=True, progress=False, **options)
print(json.dumps({"seconds": result.seconds, "import": imported - start, "timing": result.extra["seconds"],
                  "objects": result.extra.get("objects"), "blocks": result.blocks}))
