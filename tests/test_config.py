"""The one way to load a config: Hydra composes, the code gets a validated `XibConfig` dataclass."""

import dataclasses

import pytest
import yaml

from xib.cli import main
from xib.config import ConfigError, XibConfig, load_config, to_dict, to_flat_dict


def test_default_config_composes_to_the_typed_dataclass(xib_root):
    cfg = load_config()
    assert isinstance(cfg, XibConfig) and dataclasses.is_dataclass(cfg.train)
    assert cfg.modality.name == "image"
    assert cfg.paths.data == f"{xib_root}/data"  # interpolations resolved
    assert cfg.model.llm.path == f"{xib_root}/artifacts/bootstrap/llm"
    assert to_flat_dict(cfg)["train.zero_stage"] == 2


def test_overrides_select_groups_and_values(xib_root):
    cfg = load_config(["modality=video", "data.world.items_per_modality=123", "model=vicuna7b"])
    assert cfg.modality.name == "video" and cfg.modality.init_from == "image"
    assert cfg.data.world.items_per_modality == 123
    assert cfg.model.projection.num_query_tokens == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.steps=many"], "train.steps"),
        (["train.step=5"], "did you mean 'train.steps'?"),
        (["trian.steps=5"], "did you mean 'train.steps'?"),
        (["model=vicuna8b"], "unknown model option 'vicuna8b'; choices: demo, smollm2, vicuna13b, vicuna7b"),
        (["train.steps=-5"], "train.steps=-5: must be >= 1"),
        (["modality.name=smell"], "modality.name='smell': must be one of image, pc, audio, video"),
        (["train.steps_by_modality.image=-1"], "train.steps_by_modality.image=-1: must be >= 1"),
        (["+train.steps_by_modality.smell=5"], "names no modality"),
        (["+train.lr_by_modality.audio=0"], "train.lr_by_modality.audio=0.0: must be > 0"),
        (["train.steps_by_modality.pc=5"], "to add it, use +train.steps_by_modality.pc=5"),
        (["eval.modalities=[image,smell]"], "eval.modalities"),
        (["modality=pc", "modality.init_from=pc"], "must name another modality"),
        (["train"], "is not an override"),
        (["train.steps=[1,"], "'train.steps=[1,': no viable alternative"),
        (["train.zero_stage=5"], "train.zero_stage=5: must be one of 0, 1, 2, 3"),
        (["train.dtype=fp16"], "train.dtype='fp16': must be one of fp32, bf16"),
        (["train.mix=cubic"], "train.mix='cubic': must be one of sqrt, proportional, uniform"),
        (["model.projection.kind=mlp"], "must be one of qformer, linear"),
        (["infra.stage_nice={align@pc: 20}"], "infra.stage_nice.align@pc=20: must be between 0 and 19"),
    ],
)
def test_bad_config_is_one_config_error_line(xib_root, overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides)
    text = str(caught.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["config", "train.step=5"], "did you mean 'train.steps'?"),
        (["config", "model=vicuna8b"], "choices: demo, smollm2, vicuna13b, vicuna7b"),
        (["align", "train.steps=-1"], "train.steps=-1: must be >= 1"),
        (["features", "modality=smell"], "unknown modality option 'smell'; choices: audio, image, pc, video"),
        (["no-such-command"], "unknown command"),
        (["confg"], "did you mean 'config'?"),
    ],
)
def test_cli_config_errors_are_one_line_and_exit_2(capsys, xib_root, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("name", ["config", "align", "dashboard", "ask", "world", "params"])
def test_help_on_any_command(capsys, name):
    assert main([name, "--help"]) == 0
    assert f"usage: xib {name}" in capsys.readouterr().out


def test_cli_prints_the_config_every_command_gets(capsys, xib_root):
    assert main(["config", "train.steps=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == to_dict(load_config(["train.steps=7"]))
    assert printed["train"]["steps"] == 7


def test_a_composed_file_is_the_primary_config_and_takes_value_overrides(xib_root, tmp_path):
    from xib.pipeline.params import compose_params

    params = tmp_path / "params.yaml"
    params.write_text(compose_params(["train.steps=9"]))
    cfg = load_config(["modality.name=video", "modality.init_from=image"], config_file=params)
    assert cfg.modality.name == "video" and cfg.modality.init_from == "image"
    assert cfg.train.steps == 9
    assert cfg == load_config(["train.steps=9", "modality=video"])
    with pytest.raises(ConfigError):
        load_config(["train.nope=1"], config_file=params)


def test_params_flag_composes_the_file_for_that_command_only(capsys, xib_root, tmp_path):
    from xib.pipeline.params import compose_params

    params = tmp_path / "params.yaml"
    params.write_text(compose_params(["train.steps=11"]))
    assert main(["--params", str(params), "config", "seed=4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 11 and printed["seed"] == 4
    assert load_config().train.steps != 11  # nothing left switched on for the process


def test_the_saved_config_loads_back_equal(xib_root, tmp_path):
    from xib.config import to_yaml

    cfg = load_config(["modality=audio", "train.steps=3"])
    saved = tmp_path / "run_config.yaml"
    saved.write_text(to_yaml(cfg))
    assert load_config(config_file=saved) == cfg


def _leaves(node, prefix=""):
    """{dotted key: value} of a plain config; an empty table is a leaf ({} by default, the YAML fills it)."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def test_dataclass_defaults_are_the_embedded_default(monkeypatch):
    """One value per number: a field's default is what the default composition gives it, so the
    dataclass and conf/ never disagree; tables (encoders, per-modality overrides) live in conf/ only."""
    from omegaconf import OmegaConf

    monkeypatch.delenv("XIB_ROOT", raising=False)
    defaults = _leaves(OmegaConf.to_container(OmegaConf.structured(XibConfig), resolve=True))
    composed = _leaves(to_dict(load_config()))
    disagree = {k: (v, composed.get(k)) for k, v in defaults.items() if v != {} and composed.get(k) != v}
    assert not disagree, f"dataclass default != conf/ (default, conf): {disagree}"


def test_variants_state_only_what_differs():
    vicuna7b, vicuna13b = (
        _leaves(to_dict(load_config([f"model={m}"]).model)) for m in ("vicuna7b", "vicuna13b")
    )
    differ = sorted(k for k in vicuna7b if vicuna7b[k] != vicuna13b[k])
    assert differ == ["llm.path", "name", "projection.init_from", "projection.qformer_tokenizer"]
    demo, paper = (load_config([f"train={t}"]).train for t in ("demo", "paper"))
    assert (demo.betas, demo.zero_stage, demo.mix) == (paper.betas, paper.zero_stage, paper.mix)
    assert paper.steps_by_modality == {} and demo.steps_by_modality == {"image": 4000}


def test_xib_config_prints_what_params_yaml_holds(monkeypatch, capsys):
    from omegaconf import OmegaConf

    from xib.pipeline.params import PARAMS_FILE

    monkeypatch.delenv("XIB_ROOT", raising=False)
    assert main(["config"]) == 0
    printed = _leaves(yaml.safe_load(capsys.readouterr().out))
    params = _leaves(OmegaConf.to_container(OmegaConf.load(PARAMS_FILE), resolve=True))
    assert {k: printed.get(k) for k in params} == params
