"""What the benchmark scripts share: a command timed on pinned cores, and a
`sluice run` timed as the fastest of a few."""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd, cores=1, env=None):
    """Run cmd pinned to `cores` CPUs under /usr/bin/time: (wall s, peak RSS MB, stdout, stderr).
    A failing command ends the benchmark with its stderr."""
    with tempfile.NamedTemporaryFile() as t:
        pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))]
        started = time.perf_counter()
        out = subprocess.run(pin + ["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd,
                             capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if out.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
        rss = int(Path(t.name).read_text().split()[-1]) / 1024
        return wall, rss, out.stdout, out.stderr


def fastest_run(sluice, config, raw, lake, chunk_size, tries=2):
    """`sluice run` of `config` on the files under `raw` into `lake` (emptied
    first), one worker on one core, `tries` times: the fastest as (wall s,
    peak RSS MB, what it printed on stdout and stderr)."""
    best = None
    for _ in range(tries):
        shutil.rmtree(lake, ignore_errors=True)
        wall, rss, out, err = timed([str(sluice), "run", "--config", str(config), "--input", str(raw),
                                     "--lake", str(lake), "--workers", "1", "--chunk-size", chunk_size])
        if best is None or wall < best[0]:
            best = (wall, rss, out + err)
    return best
