import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from xib.cli import main
from xib.config import load_config, to_flat_dict


def test_default_config_composes_and_resolves(xib_root):
    cfg = load_config()
    assert cfg.modality.name == "image"
    assert cfg.paths.data == f"{xib_root}/data"
    assert cfg.model.llm.path == f"{xib_root}/artifacts/bootstrap/llm"
    flat = to_flat_dict(cfg)
    assert flat["train.zero_stage"] == 2


def test_overrides_select_groups_and_values(xib_root):
    cfg = load_config(["modality=video", "data.world.items_per_modality=123", "model=vicuna7b"])
    assert cfg.modality.name == "video" and cfg.modality.init_from == "image"
    assert cfg.data.world.items_per_modality == 123
    assert cfg.model.projection.num_query_tokens == 32


def test_typed_schema_rejects_bad_types_and_unknown_keys(xib_root):
    with pytest.raises(ValidationError):
        load_config(["train.steps=many"])
    with pytest.raises(ConfigCompositionException):
        load_config(["train.nope=1"])


def test_cli_prints_config(capsys, xib_root):
    assert main(["config", "train.steps=7"]) == 0
    assert "steps: 7" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


def test_params_file_mode_takes_group_choices_and_values(xib_root, monkeypatch):
    from xib.pipeline import compose_params

    params = xib_root / "params.yaml"
    params.write_text(compose_params())
    monkeypatch.setenv("XIB_PARAMS_FILE", str(params))
    cfg = load_config(["modality=video", "train.steps=9"])
    assert cfg.modality.name == "video" and cfg.modality.init_from == "image"
    assert cfg.train.steps == 9
    assert load_config(["modality=pc", "modality.init_from=image"]).modality.init_from == "image"
