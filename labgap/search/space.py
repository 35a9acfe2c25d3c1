"""The search-space dimensions a research direction is made of: float and integer ranges, choices.

Each dimension turns an optimiser's raw value into a method's value (`value`), says whether a
method's value is one it can produce (`contains`) and describes itself in one line for an LLM
agent (`summary`). They are plain frozen data, so directions stay serialisable and comparable.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ChoiceValue = bool | int | float | str | None


class _Interval(BaseModel):
    """Shared bounds check of the numeric ranges."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self):
        if not self.low < self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs a positive lower bound")
        return self


class FloatRange(_Interval):
    """A continuous interval. Sampled values are rounded (3 decimals, or 3 significant digits on a
    log scale) so methods stay readable and near-identical methods count as repeats."""

    kind: Literal["float"] = "float"
    low: float
    high: float

    def value(self, raw: float) -> float:
        rounded = float(f"{raw:.3g}") if self.log else round(raw, 3)
        return min(max(rounded, self.low), self.high)

    def contains(self, value: Any) -> bool:
        """In range and on the rounding grid, i.e. a value this range can produce."""
        return (
            isinstance(value, float)
            and self.low <= value <= self.high
            and self.value(value) == value
        )

    def summary(self) -> str:
        return f"{self.low:g}–{self.high:g}" + (" (log)" if self.log else "")


class IntRange(_Interval):
    """An integer interval (inclusive)."""

    kind: Literal["int"] = "int"
    low: int
    high: int

    def value(self, raw: int) -> int:
        return int(raw)

    def contains(self, value: Any) -> bool:
        return type(value) is int and self.low <= value <= self.high

    def summary(self) -> str:
        return f"{self.low}–{self.high}" + (" (log)" if self.log else "")


class Choice(BaseModel):
    """A finite set of options."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["choice"] = "choice"
    options: tuple[ChoiceValue, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique(self) -> "Choice":
        if len({(type(option), option) for option in self.options}) != len(self.options):
            raise ValueError(f"repeated options in {self.options}")
        return self

    def value(self, raw: ChoiceValue) -> ChoiceValue:
        return raw

    def contains(self, value: Any) -> bool:
        return any(type(value) is type(option) and value == option for option in self.options)

    def summary(self) -> str:
        return "{" + ", ".join(str(option) for option in self.options) + "}"


Dimension = Annotated[FloatRange | IntRange | Choice, Field(discriminator="kind")]
