"""Per-run limits on turns, tokens and dollars, and the cost of a run.

An LLM agent is a loop the model drives: without a bound it can spend without end.
``Budget`` is the bound, kept by the runtime (``model_guard.GuardedModel``), not asked
of the model:

- before every model request: turns left (``max_turns`` model requests), tokens left,
  dollars left — if any is exhausted the run stops with ``budget_exceeded``;
- the request's output is capped to what the remaining tokens and dollars can pay for,
  so one long answer cannot overshoot by much;
- after every response: its usage is charged at the price table's rates, and a run that
  went over stops there, with ``budget_exceeded`` and the numbers in the reason.

Never a silent truncation: a response cut short by the cap the budget imposed is itself
``budget_exceeded``, not a shorter answer passed on as if it were whole.

Costs use ``Decimal`` so that many small requests add up exactly. The price comes from
the policy's ``models.prices`` table, else from the price data bundled with
``genai-prices`` (hosted models); a model with no known price cannot be given a dollar
limit, so the run refuses to start rather than run unmetered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MTOK = Decimal(1_000_000)


class BudgetExceeded(Exception):
    """A per-run limit was reached; the run stops with status ``budget_exceeded``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnknownPrice(ValueError):
    """No price is known for the model, so a dollar limit cannot be enforced."""


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    #: Where the price came from (``policy`` or ``genai-prices``), for the audit log.
    source: str = "policy"

    @classmethod
    def of(cls, input_per_mtok: float, output_per_mtok: float, cached: float | None = None, source: str = "policy"):
        return cls(
            Decimal(str(input_per_mtok)),
            Decimal(str(output_per_mtok)),
            None if cached is None else Decimal(str(cached)),
            source,
        )

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = self.cached_input_per_mtok if self.cached_input_per_mtok is not None else self.input_per_mtok
        return (
            (input_tokens - cached) * self.input_per_mtok + cached * cached_rate + output_tokens * self.output_per_mtok
        ) / MTOK


@dataclass
class Spend:
    """What a run used so far (returned with every run, so a server can sum per change)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": str(self.cost_usd.quantize(Decimal("0.000001"))),
        }


@dataclass
class Budget:
    """The limits of one run and what has been spent against them."""

    price: Price
    max_turns: int
    max_usd: Decimal
    max_tokens: int | None = None
    spent: Spend = field(default_factory=Spend)

    def __post_init__(self) -> None:
        self.max_usd = Decimal(str(self.max_usd))

    # --- before a request -------------------------------------------------------------

    def before_request(self) -> None:
        """Refuse a request the budget cannot start (raises ``BudgetExceeded``)."""
        if self.spent.requests >= self.max_turns:
            raise BudgetExceeded(
                f"turn limit reached: {self.spent.requests} model requests (max_turns: {self.max_turns})"
            )
        if self.priced and self.spent.cost_usd >= self.max_usd:
            raise BudgetExceeded(f"dollar limit reached: spent ${self._usd()} of max_usd ${self.max_usd}")
        if self.max_tokens is not None and self.spent.total_tokens >= self.max_tokens:
            raise BudgetExceeded(
                f"token limit reached: {self.spent.total_tokens} tokens (max_tokens: {self.max_tokens})"
            )

    def output_cap(self, configured: int | None) -> int | None:
        """The most output tokens the next response may use: what is left to pay for.

        ``None`` when nothing limits it (a free model without a token limit and no cap).
        """
        caps = [c for c in (configured,) if c is not None]
        if self.max_tokens is not None:
            caps.append(self.max_tokens - self.spent.total_tokens)
        if self.price.output_per_mtok > 0:
            left = self.max_usd - self.spent.cost_usd
            caps.append(int(left * MTOK / self.price.output_per_mtok))
        if not caps:
            return None
        return max(1, min(caps))

    # --- after a response -------------------------------------------------------------

    def charge(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
        """Record one response's usage; raise ``BudgetExceeded`` if the run went over."""
        cost = self.price.cost(input_tokens, output_tokens, cached_input_tokens)
        self.spent.requests += 1
        self.spent.input_tokens += input_tokens
        self.spent.output_tokens += output_tokens
        self.spent.cost_usd += cost
        if self.priced and not (input_tokens or output_tokens):
            raise BudgetExceeded(
                "the endpoint reported no token usage for a priced model, so the dollar limit cannot be enforced"
            )
        if self.spent.cost_usd > self.max_usd:
            raise BudgetExceeded(f"dollar limit exceeded: spent ${self._usd()} of max_usd ${self.max_usd}")
        if self.max_tokens is not None and self.spent.total_tokens > self.max_tokens:
            raise BudgetExceeded(
                f"token limit exceeded: {self.spent.total_tokens} tokens (max_tokens: {self.max_tokens})"
            )
        return cost

    @property
    def priced(self) -> bool:
        return self.price.input_per_mtok > 0 or self.price.output_per_mtok > 0

    def _usd(self) -> str:
        return str(self.spent.cost_usd.quantize(Decimal("0.000001")))


def lookup_price(
    model: str, prices: dict[str, Any], *, provider: str | None = None, base_url: str | None = None
) -> Price:
    """The price of ``model``: the policy's table first, then ``genai-prices``' bundled data.

    ``prices`` maps model names to objects with ``input_per_mtok`` / ``output_per_mtok``
    (the policy's ``ModelPrice``). The bundled data is only consulted, never updated: no
    network. Raises ``UnknownPrice`` with the key to add when neither knows the model.
    """
    entry = prices.get(model)
    if entry is not None:
        return Price.of(entry.input_per_mtok, entry.output_per_mtok, entry.cached_input_per_mtok)
    try:
        from genai_prices import Usage, calc_price

        # Priced at 1k tokens and scaled: a million at once would hit long-context tiers.
        kwargs: dict[str, Any] = {"provider_api_url": base_url} if base_url else {"provider_id": provider}
        inp = Decimal(str(calc_price(Usage(input_tokens=1000, output_tokens=0), model_ref=model, **kwargs).total_price))
        both = calc_price(Usage(input_tokens=1000, output_tokens=1000), model_ref=model, **kwargs).total_price
        return Price(inp * 1000, (Decimal(str(both)) - inp) * 1000, None, "genai-prices")
    except Exception:  # LookupError for unknown models; anything else: we do not know either
        pass
    raise UnknownPrice(
        f"no price is known for model {model!r}: add it to models.prices in the base branch's "
        f".mergegate.yml (input_per_mtok / output_per_mtok in USD; 0 for a local model)"
    )
