"""Where a planted AWS secret lands after a small sweep: objects of the store and files of Ray's
session folder, with itx's filter of Tune's credential copy (`after`) and without it (`before`).

    PYTHONPATH=. .venv/bin/python benchmarks/secret_exposure.py

Each variant runs tests/fixtures/tiny.yaml cut to one intermediate and one target (4 trials) on a
private local Ray whose temp folder is a fresh directory, into a local S3 server (moto) whose
secret key is the planted value, then counts the value in every object and every session file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "itx-planted-aws-secret-count-5e2a"


def one(variant: str) -> None:
    import pyarrow.fs as pafs
    import ray
    import yaml

    import sweep.cluster
    from sweep.config import parse_config
    from sweep.runner import run_sweep
    from sweep.store import ResultsStore
    from tests.sweep.test_store import moto_s3

    endpoint = moto_s3()
    uri = next(endpoint)
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    if variant == "before":  # Tune copies AWS_* keys into each trainable's runtime_env
        sweep.cluster.keep_secrets_out_of_tune = lambda: None
    raw = yaml.safe_load((ROOT / "tests" / "fixtures" / "tiny.yaml").read_text())
    raw.update(
        name=f"secrets-{variant}",
        storage=f"{uri}/{variant}",
        intermediates=["topic_easy"],
        targets=["nli"],
        languages=["en"],
        controls={"scratch": False},
    )
    exp = parse_config(raw)
    temp = tempfile.mkdtemp(prefix="itx-se-", dir="/tmp")  # short: Ray's socket paths
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp)
    try:
        outcome = run_sweep(exp, verbose=0)
    finally:
        ray.shutdown()
    store = ResultsStore(exp.storage, exp.name)
    selector = pafs.FileSelector(store.root.split("/")[0], recursive=True)
    objects = [i.path for i in store.fs.get_file_info(selector) if i.type == pafs.FileType.File]
    in_store = sum(store.fs.open_input_stream(p).read().count(SECRET.encode()) for p in objects)
    files = [p for p in Path(temp).rglob("*") if p.is_file() and not p.is_symlink()]
    hits = {p.name: p.read_bytes().count(SECRET.encode()) for p in files}
    hits = {name: n for name, n in hits.items() if n}
    print(
        f"{variant}: {len(outcome.errored)} errored; store: {in_store} in {len(objects)} objects; "
        f"Ray session folder: {sum(hits.values())} in {len(files)} files {hits or ''}"
    )
    shutil.rmtree(temp, ignore_errors=True)
    next(endpoint, None)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        one(sys.argv[1])
    else:  # each variant in its own process: the filter changes Ray's module state
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env.setdefault("ITX_CACHE", str(ROOT / ".cache" / "itx"))
        for variant in ("before", "after"):
            subprocess.run([sys.executable, __file__, variant], check=True, env=env, cwd=ROOT)
