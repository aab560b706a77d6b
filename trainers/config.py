"""The training configuration: frozen defaults, then a YAML file, then dotted command-line overrides.

The dataclass defaults are the paper's fine-tuning settings (4000 steps, global
batch 64, Adam, 64 warm-up steps then a constant 2e-5, 1024 tokens), so a YAML
file only names what differs: the model, the data and the output directory.
Every key a user sets remembers where it came from (file and line, or the
command line) so that a bad value is reported where it was written.

`python -m trainers.config CONFIG [key=value ...]` resolves and checks a
config without starting DeepSpeed (building `builtin:` models and data on
first use, see trainers/builtin.py); bin/train.sh runs it before the launcher.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ModelSection:
    path: str = ""  # local directory in Hugging Face format (we never download), or builtin:tiny / builtin:small
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 | flash_attention_3
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class DataSection:
    path: str = ""  # a `datasets` dataset saved with save_to_disk, or builtin:demo
    k: tuple[int, ...] | None = (1, 2, 3)  # keep rows whose k is listed: D(1), D(1,2), D(1,2,3); null keeps all
    packing: bool = True  # falls back to padding when the attention backend cannot keep samples apart
    audit_family: str = "skillmix"  # the leak audit checks the data against this family's held-out tasks
    audit_allow: tuple[str, ...] = ()  # held-out words exempt from the audit's text check (harness data audit --allow)


@dataclass(frozen=True)
class TrainSection:
    steps: int = 4000
    global_batch_size: int = 64  # samples per optimizer step, over all ranks and accumulation steps
    micro_batch_size: int = 4  # samples per rank per forward pass
    lr: float = 2e-5
    warmup_steps: int = 64
    max_length: int = 1024
    save_every: int = 500
    keep_checkpoints: int = 2  # DeepSpeed checkpoints hold optimizer state and are large
    seed: int = 0
    log_every: int = 10
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    gradient_clipping: float = 1.0  # not stated in the paper; 1.0 is the common choice


@dataclass(frozen=True)
class DeepSpeedSection:
    zero_stage: int = 2
    config: str | None = None  # JSON template; null means trainers/configs/zero<stage>.json


@dataclass(frozen=True)
class LoggingSection:
    tensorboard: bool = True  # event files in OUTPUT/tensorboard (`tensorboard --logdir OUTPUT/tensorboard`)
    wandb: bool = False  # Weights & Biases, rank 0 only
    wandb_project: str = "skillmix-harness"
    wandb_entity: str | None = None  # null: the account's default entity
    wandb_mode: str = "offline"  # offline needs no network (upload later with `wandb sync`) | online


WANDB_MODES = ("offline", "online")


@dataclass(frozen=True)
class TrainingConfig:
    output_dir: str = "runs/train"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    # dotted key -> "FILE line N" or "command line"; kept out of equality and of the saved config
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-ready data (tuples become lists)."""
        resolved = dataclasses.asdict(self)
        resolved.pop("origins")
        return _plain(resolved)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def where(self, key: str) -> str:
        """Where a key was set, for error messages."""
        return self.origins.get(key, "the built-in defaults")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def default_mapping() -> dict[str, Any]:
    return TrainingConfig().to_dict()


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> TrainingConfig:
    """Resolve defaults <- YAML file <- `key=value` overrides into a validated TrainingConfig."""
    mapping = default_mapping()
    origins: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise HarnessError(f"config file {path} does not exist; configs live in {CONFIG_DIR}")
        text = path.read_text(encoding="utf-8")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise HarnessError(f"{path} is not valid YAML: {error}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise HarnessError(f"{path} must hold a mapping of config keys, not {type(loaded).__name__}")
        lines = _key_lines(text)
        for key, value in _flatten(loaded):
            where = f"{path} line {lines[key]}" if key in lines else str(path)
            _assign(mapping, key, value, where)
            origins[key] = where
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key:
            raise HarnessError(f"override {override!r} must look like key=value, e.g. train.steps=20")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        where = f"the command line argument {override}"
        _assign(mapping, key.strip(), value, where)
        origins[key.strip()] = where
    config = _build(TrainingConfig, mapping, "", origins)
    config = dataclasses.replace(config, origins=origins)
    _validate(config)
    return config


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested YAML mapping -> (dotted key, leaf value); a section mapping is descended into."""
    sections = {f.name for f in dataclasses.fields(TrainingConfig) if dataclasses.is_dataclass(f.default_factory)}
    pairs: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in sections and isinstance(value, dict):
            pairs.extend(_flatten(value, f"{dotted}."))
        else:
            pairs.append((dotted, value))
    return pairs


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key -> 1-based line of the key in a YAML text, for error messages."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                dotted = f"{prefix}{key_node.value}"
                lines[dotted] = key_node.start_mark.line + 1
                walk(value_node, f"{dotted}.")

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return lines


def _assign(mapping: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    target = mapping
    for depth, part in enumerate(parts):
        if not isinstance(target, dict) or part not in target:
            known = ", ".join(sorted(_known_keys(mapping)))
            raise HarnessError(f"unknown config key {key!r} ({where}); known keys: {known}")
        if depth == len(parts) - 1:
            if isinstance(target[part], dict):
                raise HarnessError(
                    f"{key!r} is a section ({where}); set one of its keys, e.g. {key}.{next(iter(target[part]))}=..."
                )
            target[part] = value
        else:
            target = target[part]


def _known_keys(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            keys.extend(_known_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _build(cls: type, mapping: dict[str, Any], prefix: str, origins: dict[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for config_field in dataclasses.fields(cls):
        if config_field.name == "origins":
            continue
        key = f"{prefix}{config_field.name}"
        hint = hints[config_field.name]
        if dataclasses.is_dataclass(hint):
            values[config_field.name] = _build(hint, mapping[config_field.name], f"{key}.", origins)
        else:
            values[config_field.name] = _coerce(mapping[config_field.name], hint, key, origins)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, origins: dict[str, str]) -> Any:
    """Check a leaf value against its type hint, converting where YAML's reading is narrower than ours."""
    where = origins.get(key, "the built-in defaults")
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(value, inner, key, origins)
    if typing.get_origin(hint) is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        item_type = args[0]
        if args[-1] is not Ellipsis and len(items) != len(args):
            raise HarnessError(f"{key} needs {len(args)} values, got {value!r} ({where})")
        return tuple(_coerce(item, item_type, key, origins) for item in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        # PyYAML reads 2e-5 (no dot) as a string, so accept numeric strings
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise HarnessError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r} ({where})")


def _validate(config: TrainingConfig) -> None:
    train = config.train
    positive = {
        "train.steps": train.steps,
        "train.global_batch_size": train.global_batch_size,
        "train.micro_batch_size": train.micro_batch_size,
        "train.save_every": train.save_every,
        "train.keep_checkpoints": train.keep_checkpoints,
        "train.log_every": train.log_every,
        "train.lr": train.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise HarnessError(f"{key} must be positive, got {value} ({config.where(key)})")
    if train.warmup_steps < 0:
        raise HarnessError(f"train.warmup_steps must be >= 0 ({config.where('train.warmup_steps')})")
    if train.max_length < 16:
        raise HarnessError(f"train.max_length must be at least 16 tokens ({config.where('train.max_length')})")
    if train.global_batch_size % train.micro_batch_size:
        raise HarnessError(
            f"train.global_batch_size {train.global_batch_size} is not a multiple of "
            f"train.micro_batch_size {train.micro_batch_size} ({config.where('train.global_batch_size')})"
        )
    if config.deepspeed.zero_stage not in (2, 3):
        raise HarnessError(f"deepspeed.zero_stage must be 2 or 3 ({config.where('deepspeed.zero_stage')})")
    if not config.output_dir:
        raise HarnessError("output_dir is empty; set it in the config or with output_dir=PATH")
    if config.logging.wandb_mode not in WANDB_MODES:
        raise HarnessError(
            f"logging.wandb_mode must be one of {', '.join(WANDB_MODES)}, got {config.logging.wandb_mode!r} "
            f"({config.where('logging.wandb_mode')})"
        )


def prepare(config: TrainingConfig) -> TrainingConfig:
    """Everything a launch needs before DeepSpeed starts: `builtin:` paths resolved (built on first
    use), the model and data found, the data audited, the logging packages importable."""
    from trainers.builtin import resolve_builtins
    from trainers.monitor import check_logging

    config = resolve_builtins(config)
    check_paths(config)
    check_logging(config)
    return config


def check_paths(config: TrainingConfig) -> None:
    """Fail early, with the fix, when the model or the dataset is not where the config says."""
    how = "bin/train.sh CONFIG {key}=/path/to/it"
    model = Path(config.model.path) if config.model.path else None
    if model is None:
        raise HarnessError(f"model.path is not set; pass it with {how.format(key='model.path')}")
    if not (model / "config.json").is_file():
        state = "does not exist" if not model.exists() else "has no config.json (not a Hugging Face model directory)"
        raise HarnessError(
            f"model.path {model} {state} (set in {config.where('model.path')}). Put the model's local weights there "
            f"or point to them with {how.format(key='model.path')}; the trainer never downloads models "
            f"(model.path=builtin:tiny builds a tiny random one to try the recipe)."
        )
    data = Path(config.data.path) if config.data.path else None
    if data is None:
        raise HarnessError(f"data.path is not set; pass it with {how.format(key='data.path')}")
    if not (data / "dataset_info.json").is_file() and not (data / "dataset_dict.json").is_file():
        state = "does not exist" if not data.exists() else "is not a dataset saved with save_to_disk"
        raise HarnessError(
            f"data.path {data} {state} (set in {config.where('data.path')}). Generate training data with "
            f"`harness generate-data` or point to it with {how.format(key='data.path')} "
            f"(data.path=builtin:demo builds a small demo set to try the recipe)."
        )
    audit_training_data(config)
    if config.deepspeed.config is not None and not Path(config.deepspeed.config).is_file():
        raise HarnessError(
            f"deepspeed.config {config.deepspeed.config} does not exist ({config.where('deepspeed.config')})"
        )


def audit_training_data(config: TrainingConfig) -> None:
    """Refuse to train on data that names held-out skills or topics, or holds held-out combinations.

    Training on held-out material would void the held-out half of the experiment, so the
    check runs before every launch (about 3 s for the paper's 14k texts).
    """
    from harness.core.audit import audit_dataset, heldout_tasks
    from harness.core.registry import load_registry

    report = audit_dataset(
        Path(config.data.path), heldout_tasks(load_registry(), config.data.audit_family), allow=config.data.audit_allow
    )
    print(report.summary(), file=sys.stderr)


def split_arguments(argv: typing.Sequence[str]) -> tuple[str, list[str]]:
    """`CONFIG key=value ...` -> (config path, overrides)."""
    if not argv or "=" in argv[0] or argv[0] in {"-h", "--help"}:
        raise HarnessError("usage: CONFIG [key=value ...], e.g. trainers/configs/tiny_cpu.yaml train.steps=20")
    return argv[0], list(argv[1:])


def main(argv: typing.Sequence[str] | None = None) -> int:
    """Resolve and check a config; print it with --print. Exit 2 with the message on a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show = "--print" in argv
    argv = [argument for argument in argv if argument != "--print"]
    try:
        path, overrides = split_arguments(argv)
        config = prepare(load_config(path, overrides))
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if show:
        print(config.to_yaml(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
