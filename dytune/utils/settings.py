"""Typed settings: dataclasses whose fields carry help text and the range or choices their values must lie in.

Every value is parsed to the field's declared type and checked when an instance is built and whenever a field is
assigned, so a bad value fails at once with a message naming the setting, the value and what was expected. The
run configuration (`dytune.run_config.TrainConfig`) and each method's own settings (`dytune.methods`) are built
on this.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

__all__ = ["AT_LEAST_0", "AT_LEAST_1", "POSITIVE", "Bounds", "Settings", "setting"]


@dataclass(frozen=True)
class Bounds:
    """The interval a number setting (or every number of a list setting) must lie in; `None` leaves a side open."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_0, AT_LEAST_1, POSITIVE = Bounds(0), Bounds(1), Bounds(0, low_open=True)
Choices = Union[Sequence[str], Callable[[], Sequence[str]]]


def setting(text: str, default: Any, bounds: Optional[Bounds] = None, choices: Optional[Choices] = None,
             pattern: Optional[Tuple[str, str]] = None) -> Any:
    """A dataclass field with its help text and what its values must satisfy.

    Args:
        text: Help text (`Settings.help()`, `dytune train --help-config`).
        default: Default value (lists and dicts are copied per instance).
        bounds: Interval of a number, or of every number of a list.
        choices: Allowed strings, or a function returning them (evaluated when a value is checked).
        pattern: (regular expression the whole string must match, its description for messages).
    """
    metadata = {"help": text, "bounds": bounds, "choices": choices, "pattern": pattern}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class _Mismatch(Exception):
    """A value that is not of the declared type, range or choices (turned into a ValueError naming the setting)."""


_NONE_WORDS = {"", "none", "null", "~"}
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _choices(metadata: typing.Mapping[str, Any]) -> Optional[Sequence[str]]:
    choices = metadata.get("choices")
    return choices() if callable(choices) else choices


def _noun(hint: Any, plural: bool = False) -> str:
    if hint is bool:
        return "true or false"
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}
    return names.get(hint, ("a value", "values"))[plural]


def _expected(hint: Any, metadata: typing.Mapping[str, Any]) -> str:
    """What a setting of annotation `hint` accepts, in words: 'an integer >= 1', 'one of fp32, bf16, fp16', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bounds, choices, pattern = metadata.get("bounds"), _choices(metadata), metadata.get("pattern")
    if origin is Union:
        return _expected(next(a for a in args if a is not type(None)), metadata) + " or None"
    if origin in (list, tuple):
        each = f", each one of {', '.join(choices)}" if choices is not None else ""
        return f"a list of {_noun(args[0], plural=True)}" + (f" {bounds}" if bounds else "") + each
    if origin is dict:
        return "a mapping of names to values"
    if choices is not None:
        return "one of " + ", ".join(choices)
    if pattern is not None:
        return pattern[1]
    return _noun(hint) + (f" {bounds}" if bounds else "")


def _convert(hint: Any, value: Any, metadata: typing.Mapping[str, Any]) -> Any:
    """`value` as annotation `hint` says, within the field's bounds and choices; raises _Mismatch otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        return _convert(next(a for a in args if a is not type(None)), value, metadata)
    if origin in (list, tuple):  # List[X] or Tuple[X, ...]
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return origin(_convert(args[0], item, metadata) for item in value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _Mismatch
        choices, pattern = _choices(metadata), metadata.get("pattern")
        if (choices is not None and value not in choices) or (pattern and not re.fullmatch(pattern[0], value)):
            raise _Mismatch
        return value
    if hint in (int, float):
        if isinstance(value, str):
            try:
                value = int(value) if hint is int else float(value)  # e.g. lr=1e-3, which YAML 1.1 leaves a string
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if hint is int else numbers.Real):
            raise _Mismatch
        value = hint(value)
        bounds = metadata.get("bounds")
        if not math.isfinite(value) or (bounds is not None and value not in bounds):
            raise _Mismatch
        return value
    raise TypeError(f"a settings class has a field annotated {hint!r}, which settings cannot be parsed to")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


class Settings:
    """Base of the typed-settings dataclasses: fields declared with `setting(...)` are parsed and checked on
    construction and on assignment. Subclasses are `@dataclass`es."""

    def __setattr__(self, name: str, value: Any) -> None:
        spec = type(self).__dataclass_fields__.get(name)
        if spec is not None:
            hint = _hints(type(self))[name]
            try:
                value = _convert(hint, value, spec.metadata)
            except _Mismatch:
                raise ValueError(f"{name}={value!r}: expected {_expected(hint, spec.metadata)}") from None
        super().__setattr__(name, value)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def pick(cls, values: Any) -> "Settings":
        """This class's settings taken by name from `values`, any object holding them as attributes (e.g. a
        TrainConfig)."""
        missing = [f.name for f in dataclasses.fields(cls) if not hasattr(values, f.name)]
        if missing:
            raise ValueError(f"{cls.__name__}: {type(values).__name__} has no setting(s) {missing}")
        return cls(**{f.name: getattr(values, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def help_lines(cls, names: Optional[Sequence[str]] = None) -> typing.List[str]:
        """One line per setting (all, or those in `names`, in declaration order): name, what it accepts, default
        and help text."""
        hints = _hints(cls)
        lines = []
        for f in dataclasses.fields(cls):
            if names is not None and f.name not in names:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {f.name} ({_expected(hints[f.name], f.metadata)}; default {default!r}): "
                         f"{f.metadata['help']}")
        return lines

    @classmethod
    def help(cls) -> str:
        return "\n".join(cls.help_lines())
