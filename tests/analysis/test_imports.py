"""analysis must build reports on a laptop: no Ray, torch or transformers, even indirectly."""

import subprocess
import sys

HEAVY = ("ray", "torch", "transformers")


def test_analysis_imports_nothing_heavy():
    code = (
        "import sys\n"
        "import analysis.results, analysis.gains, analysis.models, analysis.report\n"
        "import analysis.simulate\n"
        # what the report imports lazily from trainers: the registry and the benchmark averages
        "analysis.gains.task_categories({}, ['xnli'])\n"
        "import trainers.metrics\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
