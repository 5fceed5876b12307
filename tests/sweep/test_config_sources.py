"""`data.sources` is typed config: unknown source names and keys are one-line errors with a
did-you-mean, exit code 2, from `itx plan` before anything loads; valid overrides reach the
loaders as written (unset keys never override an entry)."""

import pytest
import yaml
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import ConfigError, load_config
from trainers.source_config import as_dicts


def write(tmp_path, root, sources):
    raw = yaml.safe_load((root / "configs" / "xtreme_r.yaml").read_text())
    raw["data"]["sources"] = sources
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ({"xlni": {}}, "data.sources: unknown source 'xlni'; did you mean 'xnli'?"),
        ({"anli_plus": {"splt": "test"}}, "anli_plus: unknown key 'splt'; did you mean 'split'?"),
        ({"xquad": {"test": {"splt": "x"}}}, "xquad.test: unknown key 'splt'; did you mean"),
        ({"anli_plus": {"parts": {"snli": {"pth": "json"}}}}, "snli: unknown key 'pth'; did you"),
        ({"xnli": {"langs": {"de": {"path": 3}}}}, "xnli.langs.de.path: Input should be a valid"),
    ],
)
def test_bad_sources_fail_plan_in_one_line_with_exit_2(tmp_path, root, sources, message):
    result = CliRunner().invoke(app, ["plan", str(write(tmp_path, root, sources))])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_valid_sources_load_and_dump_as_written(tmp_path, root):
    sources = {
        "udpos": {"path": "conllu", "data_files": "/data/ud/ud-treebanks-v{ud_version}"},
        "anli_plus": {"parts": {"snli": {"path": "json", "data_files": {"train": "/x.jsonl"}}}},
    }
    exp = load_config(write(tmp_path, root, sources))
    assert exp.model_dump()["data"]["sources"] == sources  # trial identities unchanged
    assert as_dicts(exp.data.sources) == sources
    with pytest.raises(ConfigError, match="unknown source"):
        load_config(write(tmp_path, root, {"udpos": {}, "panxx": {}}))
