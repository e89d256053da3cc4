"""Validating the configuration's sections without pydantic: a walk of a TOML table by the
fields of a frozen dataclass.

``syncd status`` reads the configuration on every call; pydantic alone cost 0.11-0.15 s of
CPU to import (issue #20), more than the rest of the command.  The sections (syncd/config.py)
are plain dataclasses deriving from ``Section``; their field types say what a key accepts
and this module checks it, with the inputs pydantic's lax mode accepted (a quoted number for
an int, 1 for true, ...) and its error texts, so that files and messages stay as they were.

A field's type is one of: ``str``, ``int``, ``float``, ``bool``, ``date``, ``SecretStr``, a
``Literal`` of strings, ``list[...]``, a ``Section``, a union of these with ``None`` (an
optional key), ``Annotated`` with the markers below (bounds, lengths, a pattern, a function
before or after).  Rules between fields are a section's ``_check`` (ValueError: the
problem), run only when every field is valid, as pydantic's model validators were.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal, Union

Loc = tuple[int | str, ...]


class Invalid(ValueError):
    """Every problem found, each with where it is (``("mailbox", 1, "port")``)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("\n".join(f"{key_path(loc)}: {message}" for loc, message in problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [f"{key_path(loc)}: {message}" for loc, message in self.problems]


def key_path(loc: Loc) -> str:
    """``mailbox[1].port``: how the file names a key."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


class SecretStr:
    """A secret in the configuration: never shown by repr, str or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr('{self}')"


# The markers are plain classes, not dataclasses: their generated methods were compiled
# at every start for nothing.
class Range:
    """Bounds of a number (pydantic's gt, ge, lt, le)."""

    __slots__ = ("ge", "gt", "le", "lt")

    def __init__(
        self,
        *,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
    ) -> None:
        self.gt, self.ge, self.lt, self.le = gt, ge, lt, le

    def __repr__(self) -> str:
        return f"Range(gt={self.gt}, ge={self.ge}, lt={self.lt}, le={self.le})"


class Length:
    """Bounds of a string's or a list's length, and a string's pattern: anchored ``^...$``
    and matched against the whole string (pydantic's Rust regex has ``$`` end the text;
    Python's ``$`` also matches before a final newline, so ``"a\n"`` would pass)."""

    __slots__ = ("max", "min", "pattern", "regex")

    def __init__(
        self, *, min: int | None = None, max: int | None = None, pattern: str | None = None
    ) -> None:
        self.min, self.max, self.pattern = min, max, pattern
        self.regex: re.Pattern[str] | None = None
        if pattern is not None:
            # Anchored both ends, a search is a full match: fullmatch is then the same rule
            # without the final-newline exception.
            if not (pattern.startswith("^") and pattern.endswith("$")):
                raise ValueError(f"a Length pattern is anchored ^...$: {pattern!r}")
            self.regex = re.compile(pattern)

    def __repr__(self) -> str:
        return f"Length(min={self.min}, max={self.max}, pattern={self.pattern!r})"


class Before:
    """A function given the raw value first (ValueError: the problem); its result is checked."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class After:
    """A function given the checked value (ValueError: the problem); its result is kept."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


@typing.dataclass_transform(
    kw_only_default=True,
    frozen_default=True,
    field_specifiers=(dataclasses.field, dataclasses.Field),
)
class Section:
    """A table of the configuration file: subclasses are frozen dataclasses with keyword
    arguments; building one directly (or with ``dataclasses.replace``) checks and converts
    its values as reading the file does.

    A subclass is made a dataclass (``fields``, ``replace`` and ``asdict`` work on it) with
    none of the methods ``@dataclass`` writes: compiling ``__init__``, ``__eq__``,
    ``__repr__`` and the frozen ``__setattr__`` of twenty sections cost 0.01-0.02 s of
    every command's start, and the generic ones below do the same."""

    _plans: ClassVar[dict[type, dict[str, _Field]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("__doc__"):  # else @dataclass asks inspect for a signature
            cls.__doc__ = f"The {cls.__name__} section of the configuration."
        dataclasses.dataclass(init=False, repr=False, eq=False)(cls)

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        plan = _plan(cls)
        for name in values:
            if name not in plan:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        for name, spec in plan.items():
            if name in values:
                object.__setattr__(self, name, values[name])
            elif spec.required:
                raise TypeError(f"{cls.__name__}() missing required keyword argument {name!r}")
            else:
                object.__setattr__(self, name, spec.default())
        self.__post_init__()

    def __post_init__(self) -> None:
        self._convert_fields(_plan(type(self)))
        _run_check(self)

    def _convert_fields(self, names: typing.Iterable[str]) -> None:
        """Check and convert the values of fields ``names`` in place; Invalid: every problem."""
        plan = _plan(type(self))
        problems: list[tuple[Loc, str]] = []
        for name in names:
            value = getattr(self, name)
            try:
                converted = convert(plan[name].type, value)
            except Invalid as err:
                problems += [((name, *loc), message) for loc, message in err.problems]
                continue
            if converted is not value:
                object.__setattr__(self, name, converted)
        if problems:
            raise Invalid(problems)

    def derive(self, **changes: Any) -> typing.Self:
        """``dataclasses.replace(self, **changes)`` checking only the changed values (and the
        section's rules): the others were checked when ``self`` was built, and converting a
        checked value gives it back.  For many sections made from one prototype (a mailbox
        group's members), where checking every value again was most of reading the file."""
        cls = type(self)
        plan = _plan(cls)
        for name in changes:
            if name not in plan:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        section = object.__new__(cls)
        for name in plan:
            object.__setattr__(
                section, name, changes[name] if name in changes else getattr(self, name)
            )
        section._convert_fields([name for name in plan if name in changes])  # the file's order
        _run_check(section)
        return section

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _plan(type(self)))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _plan(type(self)))
        return f"{type(self).__qualname__}({shown})"

    def _check(self) -> None:
        """Rules between fields; subclasses call ``super()._check()`` first."""

    @classmethod
    def from_dict(cls, data: Any) -> typing.Self:
        """The section a TOML table describes; ``Invalid`` listing every problem."""
        section: typing.Self = build(cls, data)
        return section


class _Field:
    __slots__ = ("default", "required", "type")

    def __init__(self, type: Any, required: bool, default: Callable[[], Any]) -> None:
        self.type, self.required, self.default = type, required, default


def _plan(cls: type) -> dict[str, _Field]:
    plan = Section._plans.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        plan = {}
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                default: Callable[[], Any] = _constant(field.default)
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory
            else:
                default = _no_default
            plan[field.name] = _Field(hints[field.name], default is _no_default, default)
        Section._plans[cls] = plan
    return plan


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _no_default() -> Any:
    raise AssertionError("a required field has no default")


def build(cls: type[Any], data: Any) -> Any:
    """``cls`` from a TOML table (or itself): unknown and missing keys, every field's
    problems, then the section's own rules."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise Invalid([((), f"Input should be a valid dictionary or instance of {cls.__name__}")])
    plan = _plan(cls)
    problems: list[tuple[Loc, str]] = []
    values: dict[str, Any] = {}
    for name, spec in plan.items():
        if name in data:
            try:
                values[name] = convert(spec.type, data[name])
            except Invalid as err:
                problems += [((name, *loc), message) for loc, message in err.problems]
        elif spec.required:
            problems.append(((name,), "Field required"))
        else:
            values[name] = spec.default()
    problems += [((key,), "unknown key (misspelt?)") for key in data if key not in plan]
    if problems:
        raise Invalid(problems)
    # Built past __init__: the values are checked already, converting them again is waste.
    section = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(section, name, value)
    _run_check(section)
    return section


def _run_check(section: Section) -> None:
    try:
        section._check()
    except (ValueError, AssertionError) as err:
        if isinstance(err, Invalid):
            raise
        raise Invalid([((), str(err))]) from None


def convert(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` (lax as pydantic was), or ``Invalid`` with relative paths."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *marks = typing.get_args(tp)
        for mark in marks:
            if isinstance(mark, Before):
                value = _call(mark.func, value)
        value = convert(base, value)
        for mark in marks:
            if isinstance(mark, Range):
                _bounds(mark, value)
            elif isinstance(mark, Length):
                _length(mark, value)
            elif isinstance(mark, After):
                value = _call(mark.func, value)
        return value
    if origin is Union or origin is types.UnionType:
        return _union(typing.get_args(tp), value)
    if origin is list:
        return _list(typing.get_args(tp)[0], value)
    if origin is Literal:
        return _literal(typing.get_args(tp), value)
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return scalar(value)
    if isinstance(tp, type) and issubclass(tp, Section):
        return build(tp, value)
    raise TypeError(f"no check for fields of type {tp!r}")


def _fail(message: str) -> Invalid:
    return Invalid([((), message)])


def _call(func: Callable[[Any], Any], value: Any) -> Any:
    try:
        return func(value)
    except Invalid:
        raise
    except (ValueError, AssertionError) as err:
        raise _fail(str(err)) from None


def _union(arms: tuple[Any, ...], value: Any) -> Any:
    if value is None and type(None) in arms:
        return None
    arms = tuple(arm for arm in arms if arm is not type(None))
    if len(arms) == 1:
        return convert(arms[0], value)
    # str | Entry: the first arm that takes the value; else the problems of the arm of its
    # kind (a table's unknown key, not "should be a valid string").
    problems: dict[bool, Invalid] = {}
    for arm in arms:
        try:
            return convert(arm, value)
        except Invalid as err:
            table = isinstance(arm, type) and issubclass(arm, Section)
            problems.setdefault(table, err)
    raise problems.get(isinstance(value, dict)) or next(iter(problems.values()))


def _list(item: Any, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise _fail("Input should be a valid list")
    out: list[Any] = []
    problems: list[tuple[Loc, str]] = []
    for index, element in enumerate(value):
        try:
            out.append(convert(item, element))
        except Invalid as err:
            problems += [((index, *loc), message) for loc, message in err.problems]
    if problems:
        raise Invalid(problems)
    return out


def _literal(choices: tuple[Any, ...], value: Any) -> Any:
    if value in choices and type(value) is type(choices[0]):
        return value
    shown = [repr(c) for c in choices]
    text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    raise _fail(f"Input should be {text}")


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _fail("Input should be a valid string")


_I64 = -(2.0**63)  # pydantic reads a float as a 64-bit integer
# The blanks pydantic strips around a number (Rust's trim: Unicode White_Space); str.strip()
# strips \x1c-\x1f too, which pydantic refused.
_BLANKS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# pydantic's readings of a number written as text.  Bounded before int() or float(): a
# hostile file's 100,000-digit number is not converted.
_INT_TEXT = re.compile(r"[+-]?[0-9]+(_[0-9]+)*(\.0+)?")
_MAX_TEXT = 4300


def _float_text(value: str) -> str | None:
    """Blanks around, or "_" anywhere but first, last or twice in a row (not both)."""
    if len(value) > _MAX_TEXT:
        return None
    if "_" not in value:
        return value.strip(_BLANKS)
    if value.startswith("_") or value.endswith("_") or "__" in value:
        return None
    return value.replace("_", "")


def _int(value: Any) -> int:
    if isinstance(value, int):  # a bool too: True is 1, as pydantic's lax mode reads it
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail("Input should be a finite number")
        if not value.is_integer():
            raise _fail("Input should be a valid integer, got a number with a fractional part")
        if not _I64 < value < -_I64:
            raise _fail("Unable to parse input string as an integer, exceeded maximum size")
        return int(value)
    if isinstance(value, str):
        text = value.strip(_BLANKS)
        if len(text) <= _MAX_TEXT and _INT_TEXT.fullmatch(text):
            return int(text.split(".")[0])
        raise _fail("Input should be a valid integer, unable to parse string as an integer")
    raise _fail("Input should be a valid integer")


_FLOAT_TEXT = re.compile(
    r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)


def _float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = _float_text(value)
        if text is not None and _FLOAT_TEXT.fullmatch(text):
            return float(text)
        raise _fail("Input should be a valid number, unable to parse string as a number")
    raise _fail("Input should be a valid number")


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        if isinstance(value, int) or (value.is_integer() and _I64 < value < -_I64):
            raise _fail("Input should be a valid boolean, unable to interpret input")
        raise _fail("Input should be a valid boolean")
    if isinstance(value, str):
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise _fail("Input should be a valid boolean, unable to interpret input")
    raise _fail("Input should be a valid boolean")


_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# pydantic's (speedate's) datetime as text: "T", "t", " " or "_" between date and time;
# a fraction after "." or ",", of any length (truncated to microseconds); "Z", "z",
# "+HH:MM" or "+HHMM".  ASCII digits only (\d would take any script's).
_DATETIME_TEXT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt _]([0-9]{2}:[0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)
# Seconds as text, as speedate reads them: digits, or a number with a "." (only then an
# exponent: "8.64e4" is a day, "0E0" and "inf" are not numbers to it).
_DATE_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+|([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)")
_INEXACT = "Datetimes provided to dates should have zero time - e.g. be exact dates"


def _date(value: Any) -> date:
    """A TOML date or "YYYY-MM-DD"; and as pydantic read them, a datetime at midnight (a
    TOML one, or written as text) and a number of seconds since 1970 that is a midnight."""
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise _fail(_INEXACT)
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if _DATE_TEXT.fullmatch(value):
                return date.fromisoformat(value)
            written = _DATETIME_TEXT.fullmatch(value)
            if written:
                return _date(_datetime_of_text(written))
        except Invalid:
            raise
        except ValueError:
            raise _fail("Input should be a valid date or datetime") from None
        if len(value) <= _MAX_TEXT and _DATE_NUMBER_TEXT.fullmatch(value):  # no blanks
            return _date_of_timestamp(float(value))
        raise _fail("Input should be a valid date or datetime")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _date_of_timestamp(value)
    raise _fail("Input should be a valid date")


def _datetime_of_text(written: re.Match[str]) -> datetime:
    """The datetime _DATETIME_TEXT matched, in the form fromisoformat reads (which checks
    the ranges: hour 24, second 60, an offset of a day are refused as pydantic did)."""
    day, minutes, seconds, fraction, offset = written.groups()
    text = f"{day}T{minutes}:{seconds or '00'}"
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")  # truncated, as pydantic did
    if offset and offset in "Zz":
        text += "+00:00"
    elif offset:
        if offset[-2:] > "59":  # fromisoformat takes "+00:60" as an hour
            raise ValueError("timezone minute value is outside expected range")
        text += f"{offset[:3]}:{offset[-2:]}"
    return datetime.fromisoformat(text)


def _date_of_timestamp(value: float) -> date:
    """Seconds since 1970, or milliseconds beyond 2e10 (pydantic's rule)."""
    if not math.isfinite(value):
        raise _fail("Input should be a finite number")
    whole = value / 1000 if abs(value) > 2e10 else value
    if not -62135596800 <= whole < 253402300800:  # 0001-01-01 to 9999-12-31
        raise _fail("Input should be a valid date or datetime, out of range")
    micro = round(whole * 1_000_000)  # a datetime's precision: 1e-97 s is midnight
    if micro % 86_400_000_000:
        raise _fail(_INEXACT)
    try:
        return date(1970, 1, 1) + timedelta(days=micro // 86_400_000_000)
    except OverflowError:
        raise _fail("Input should be a valid date") from None


def _secret(value: Any) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    raise _fail("Input should be a valid string")


_SCALARS: dict[Any, Callable[[Any], Any]] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    date: _date,
    SecretStr: _secret,
}


def _bounds(mark: Range, value: float) -> None:
    def number(bound: float) -> str:
        return str(int(bound)) if float(bound).is_integer() else str(bound)

    # In pydantic's order: a NaN fails the upper bound first.
    if mark.le is not None and not value <= mark.le:
        raise _fail(f"Input should be less than or equal to {number(mark.le)}")
    if mark.lt is not None and not value < mark.lt:
        raise _fail(f"Input should be less than {number(mark.lt)}")
    if mark.ge is not None and not value >= mark.ge:
        raise _fail(f"Input should be greater than or equal to {number(mark.ge)}")
    if mark.gt is not None and not value > mark.gt:
        raise _fail(f"Input should be greater than {number(mark.gt)}")


def _length(mark: Length, value: str | list[Any]) -> None:
    size = len(value)
    if isinstance(value, str):
        if mark.min is not None and size < mark.min:
            plural = "" if mark.min == 1 else "s"
            raise _fail(f"String should have at least {mark.min} character{plural}")
        if mark.max is not None and size > mark.max:
            plural = "" if mark.max == 1 else "s"
            raise _fail(f"String should have at most {mark.max} character{plural}")
        if mark.regex is not None and not mark.regex.fullmatch(value):
            raise _fail(f"String should match pattern '{mark.pattern}'")
        return
    if mark.min is not None and size < mark.min:
        plural = "" if mark.min == 1 else "s"
        raise _fail(
            f"List should have at least {mark.min} item{plural} after validation, not {size}"
        )
    if mark.max is not None and size > mark.max:
        plural = "" if mark.max == 1 else "s"
        raise _fail(
            f"List should have at most {mark.max} item{plural} after validation, not {size}"
        )


def as_dict(section: Any) -> Any:
    """A section's values as plain data (nested sections as dicts), as model_dump gave them."""
    return dataclasses.asdict(section)
