"""The architecture interface: shared parameters + one head per task.

Every architecture sees the features through the same shared input stage
(optional sequence encoder + optional asset embedding, ``mtl_bt.models.input_stage``);
the base class builds it, validates the options every architecture accepts and
records the constructor arguments as plain data so a checkpoint can rebuild
the model with ``cls(**model.init_kwargs)``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.errors import ConfigError
from mtl_bt.models.input_stage import ENCODERS, InputStage
from mtl_bt.tasks.base import TaskSpec

#: options every architecture accepts (handled here), with their defaults
COMMON_OPTIONS: dict[str, Any] = {
    "hidden": [64, 32],
    "dropout": 0.1,
    "n_assets": 1,
    "asset_embedding": 0,
    "encoder": "none",
    "encoder_hidden": 32,
    "lookback": None,
}


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain data (what ``torch.load(weights_only=True)`` accepts)."""
    if isinstance(value, TaskSpec):
        return _plain(dataclasses.asdict(value), where)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalar
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(
        f"{where} = {value!r} is not plain data (numbers, strings, lists, dicts); "
        "model options must be plain so checkpoints can rebuild the model"
    )


def _as_spec(task: TaskSpec | Mapping[str, Any]) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else TaskSpec(**dict(task))


class MTLModel(nn.Module):
    """Base class of every architecture plugin.

    Built as ``cls(in_features, tasks, **options)``; ``forward(x, asset=None)``
    returns ``{task_name: raw_output}`` with shape ``(batch,)`` per task. ``x``
    is ``(batch, features)`` or ``(batch, lookback, features)`` with a sequence
    encoder; ``asset`` holds integer asset ids when an asset embedding is used. Gradient-level
    weightings need the shared parameters apart from the task-specific ones.

    Subclasses usually implement ``predict(h)`` (input-stage output -> task outputs)
    and ``task_modules(name)`` (modules only task ``name``'s loss reaches); the base
    class then derives ``forward``, ``task_parameters`` and ``shared_parameters``.
    ``tasks`` may be ``TaskSpec``s or their dicts (rebuild from plain data).
    """

    #: registry name, used in error messages
    architecture: str = "mtl_model"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Wrap each subclass __init__ so that building a model records its
        # arguments as plain data (model.init_kwargs): the outermost __init__'s
        # arguments plus the options (defaults filled in) of inherited ones.
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_records_kwargs", False):
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self: MTLModel, *args: Any, **kw: Any) -> None:
            depth = self.__dict__.get("_init_depth", 0)
            object.__setattr__(self, "_init_depth", depth + 1)
            init(self, *args, **kw)
            object.__setattr__(self, "_init_depth", depth)
            try:  # a non-plain argument raises only when init_kwargs is asked for
                record: Any = self._record(sig, args, kw, options_only=depth > 0)
            except ConfigError as exc:
                record = exc
            inner = self.__dict__.setdefault("_inner_records", [])
            if depth > 0:  # an inherited __init__: keep its options (defaults filled in)
                inner.append(record)
                return
            for part in [*inner, record]:
                if isinstance(part, Exception):
                    record = part
                    break
            else:
                record = {k: v for part in inner for k, v in part.items()} | record
            object.__setattr__(self, "_init_kwargs", record)
            del self.__dict__["_inner_records"]

        __init__._records_kwargs = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(self, in_features: int, tasks: Sequence[TaskSpec], **options: Any) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.in_features = in_features
        self.tasks = [_as_spec(t) for t in tasks]
        self.task_names = [t.name for t in self.tasks]
        if len(set(self.task_names)) != len(self.task_names):
            raise ConfigError(
                f"architecture {self.architecture!r}: duplicate task names {self.task_names}"
            )
        unknown = sorted(set(options) - set(COMMON_OPTIONS))
        if unknown:
            raise ConfigError(
                f"architecture {self.architecture!r}: unknown option {unknown[0]!r}"
                f"{' (and ' + ', '.join(map(repr, unknown[1:])) + ')' if unknown[1:] else ''}; "
                f"allowed options: {', '.join(self.option_names())}"
            )
        opts = {**COMMON_OPTIONS, **options}
        self._common_options = _plain(opts, f"architecture {self.architecture!r} option")
        self.hidden: list[int] = [
            self._int("hidden", h, 1) for h in self._list("hidden", opts["hidden"])
        ]
        self.dropout = self._float("dropout", opts["dropout"], 0.0, 1.0)
        encoder = self._choice("encoder", opts["encoder"], ENCODERS)
        lookback = opts["lookback"]
        self.input_stage = InputStage(
            in_features,
            n_assets=self._int("n_assets", opts["n_assets"], 1),
            asset_embedding=self._int("asset_embedding", opts["asset_embedding"], 0),
            encoder=encoder,
            encoder_hidden=self._int("encoder_hidden", opts["encoder_hidden"], 1),
            lookback=None if lookback is None else self._int("lookback", lookback, 1),
        )
        #: width of the vector the architecture consumes
        self.stage_features = self.input_stage.out_features

    # -- option helpers --------------------------------------------------
    @classmethod
    def option_names(cls) -> list[str]:
        """Every option this architecture accepts (its own + the common ones)."""
        names = set(COMMON_OPTIONS)
        for klass in cls.__mro__:
            if issubclass(klass, MTLModel) and "__init__" in klass.__dict__:
                params = list(inspect.signature(klass.__dict__["__init__"]).parameters.values())
                names |= {
                    p.name
                    for p in params[3:]
                    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                }
        return sorted(names)

    def _bad(self, key: str, value: Any, what: str) -> ConfigError:
        return ConfigError(f"architecture {self.architecture!r}: option {key} = {value!r} {what}")

    def _int(self, key: str, value: Any, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self._bad(key, value, f"must be an integer >= {low}")
        return value

    def _float(
        self, key: str, value: Any, low: float, high: float | None = None, closed: bool = False
    ) -> float:
        """A number in [low, high) ([low, high] when ``closed``), else a ConfigError."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= low
        if ok and high is not None:
            ok = value <= high if closed else value < high
        if not ok:
            bound = f">= {low}" + (
                f" and {'<=' if closed else '<'} {high}" if high is not None else ""
            )
            raise ConfigError(
                f"architecture {self.architecture!r}: option {key} = {value!r} must be {bound}"
            )
        return float(value)

    def _choice(self, key: str, value: Any, choices: Sequence[Any]) -> Any:
        if value not in choices:
            raise self._bad(key, value, f"is not one of {list(choices)}")
        return value

    def _list(self, key: str, value: Any) -> list[Any]:
        if not isinstance(value, list | tuple) or not value:
            raise self._bad(key, value, "must be a non-empty list")
        return list(value)

    def _record(
        self, sig: inspect.Signature, args: tuple[Any, ...], kw: dict[str, Any], options_only: bool
    ) -> dict[str, Any]:
        bound = sig.bind(self, *args, **kw)
        bound.apply_defaults()
        record: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[3 if options_only else 1 :]:
            kind = sig.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                record.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(f"{type(self).__name__}: pass options by keyword")
            else:
                record[name] = value
        params = list(sig.parameters)
        tasks = record.get(params[2]) if not options_only and len(params) > 2 else None
        if isinstance(tasks, list | tuple) and all(
            isinstance(t, TaskSpec | Mapping) for t in tasks
        ):
            record[params[2]] = list(self.tasks)  # normalised: every TaskSpec field, defaults in
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        for key, value in getattr(self, "_common_options", {}).items():
            if takes_any or key in sig.parameters:  # only what the constructor accepts
                record.setdefault(key, value)
        return _plain(record, f"architecture {self.architecture!r} option")

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments as plain data: ``type(model)(**model.init_kwargs)`` rebuilds it."""
        if isinstance(self._init_kwargs, Exception):
            raise self._init_kwargs
        return _plain(self._init_kwargs, "init_kwargs")

    def describe(self) -> dict[str, Any]:
        """Plain-data description for checkpoints (see ``build_model_from_dict``)."""
        return {"architecture": self.architecture, "init_kwargs": self.init_kwargs}

    # -- the interface ---------------------------------------------------
    def forward(
        self, x: torch.Tensor, asset: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return self.predict(self.input_stage(x, asset))

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Input-stage output ``(batch, stage_features)`` -> ``{task: (batch,)}``."""
        raise NotImplementedError

    def task_modules(self, name: str) -> list[nn.Module]:
        """Modules whose parameters only task ``name``'s loss reaches."""
        raise NotImplementedError

    def _check_task(self, name: str) -> None:
        if name not in self.task_names:
            raise KeyError(f"unknown task {name!r}; this model's tasks are {self.task_names}")

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches."""
        private = {id(p) for name in self.task_names for p in self.task_parameters(name)}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in private]

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters only task ``name``'s loss reaches."""
        self._check_task(name)
        seen: dict[int, nn.Parameter] = {}
        for module in self.task_modules(name):
            for p in module.parameters():
                if p.requires_grad:
                    seen.setdefault(id(p), p)
        return list(seen.values())

    def last_shared_layer(self) -> nn.Parameter | list[nn.Parameter]:
        """Weight of the last shared layer (GradNorm measures gradient norms here).

        Every task's loss must reach it, on common elements, so the tasks'
        gradient norms there are comparable. One parameter, or a list of them
        when the last shared layer is split over several tensors (e.g. one per
        cross-stitch column); GradNorm then takes the norm of all their gradients
        together. Every returned tensor is one of ``shared_parameters()``.
        Raise ``NotImplementedError`` (or a ``ConfigError`` saying why) when the
        model has no shared layer.
        """
        raise NotImplementedError

    def regularization(self) -> torch.Tensor | None:
        """Extra loss term the architecture adds (e.g. soft-sharing penalty), or None."""
        return None

    def output_layer(self, name: str) -> nn.Linear:
        """The Linear layer whose output is task ``name``'s raw output.

        Found as the last ``nn.Linear`` of ``self.heads[name]`` when the model keeps its
        heads in a ``ModuleDict`` named ``heads``, else the last ``nn.Linear`` among
        ``task_modules(name)`` (e.g. a tower's final layer). Override it when neither
        holds; ``mtl_bt.testing.check_architecture`` checks the layer really produces
        the output (the trainer starts each head's bias there).
        """
        self._check_task(name)
        heads = getattr(self, "heads", None)
        if isinstance(heads, nn.ModuleDict) and name in heads:
            modules: list[nn.Module] = [heads[name]]
        else:
            modules = list(self.task_modules(name))
        layers = [m for module in modules for m in module.modules() if isinstance(m, nn.Linear)]
        if not layers:
            raise NotImplementedError(
                f"{type(self).__name__} does not expose the output layer of {name!r}: no "
                "nn.Linear in heads[name] or task_modules(name); override output_layer"
            )
        return layers[-1]

    @torch.no_grad()
    def set_output_bias(self, values: Mapping[str, float]) -> None:
        """Start each named task's raw output near ``values[name]`` (e.g. the training
        mean of its target): a log-volatility head starting at 0 instead of about -5
        otherwise spends its first epochs learning a constant."""
        for name, value in values.items():
            self.output_layer(name).bias.fill_(float(value))

    @staticmethod
    def _out(value: torch.Tensor) -> torch.Tensor:
        """Head output ``(batch, out_dim)`` -> ``(batch,)`` when out_dim is 1."""
        return value.squeeze(-1) if value.shape[-1] == 1 else value
