"""Run `segment` in this process and SIGKILL it at one moment of one stage (for
tests/pipeline/test_stages.py): after the N-th call of a stage function returns, or
just before the N-th record of a kind is written (its data already written).

    python kill_driver.py MOMENT N INPUT OUTPUT MODEL BLOCK TILE

MOMENT is a function of `biounet.pipeline.stages` (write_prediction, pass1,
merge_step, pass2, pyramid, table_step, set_status) or `put:KIND`; or
`wait:FUNCTION` with N a file: the run holds after the first call of FUNCTION
until that file exists (then finishes normally).
"""

import os
import signal
import sys

from biounet.pipeline import stages
from biounet.write.runfolder import RunFolder

moment, count, slide, output, model, block, tile = sys.argv[1:8]
count = int(count) if count.isdigit() else 0
calls = [0]


def die_after(fn):
    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        calls[0] += 1
        if calls[0] >= count:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapped


if moment.startswith("wait:"):
    import time
    from pathlib import Path

    fn = getattr(stages, moment[5:])
    go = Path(sys.argv[2])

    def held(*args, **kwargs):
        result = fn(*args, **kwargs)
        while not go.exists():
            time.sleep(0.02)
        return result

    setattr(stages, moment[5:], held)
    count = 0
elif moment.startswith("put:"):
    kind = moment[4:]
    put = RunFolder.put

    def put_or_die(self, which, index, payload):
        if which == kind:
            calls[0] += 1
            if calls[0] >= count:
                os.kill(os.getpid(), signal.SIGKILL)
        return put(self, which, index, payload)

    RunFolder.put = put_or_die
else:
    setattr(stages, moment, die_after(getattr(stages, moment)))

from biounet.pipeline.segment import segment  # noqa: E402

segment(slide, output, model=model, block=int(block), tile=int(tile), progress=False, device="cpu")
sys.exit(0 if moment.startswith("wait:") else 3)  # 3: the moment to die never came
