"""The card-fraud world: realistic card transactions, adapting fraud, late labels.

Deterministic by seed. Everything is generated with vectorized NumPy, so 90 days of 10,000
cards (about 2M transactions) take seconds.

What is in it
-------------
* Cards with a home country, a spending level (log-normal) and a daily rate; a few favourite
  merchants per card; daily (day/night) and weekly seasonality.
* Merchants (terminals) with a category, a country and a channel (``pos``, ``contactless``,
  ``online``).
* A holiday season in the second half: more transactions, larger baskets, more online -- data
  drift that is *not* concept drift (fraud does not change because of it).
* Fraud scenarios that take turns, as adversaries adapt:

  1. ``big_ticket_abroad`` (first third): bursts of large purchases abroad;
  2. ``compromised_terminal`` (middle): a few terminals are skimmed; cards used there are
     later defrauded at home with ordinary amounts;
  3. ``low_and_slow`` (last part): small online amounts spread over days, evading velocity;
  4. ``threshold_probing`` (last part): repeated amounts just under a round limit.

* Labels that arrive late: chargebacks days to weeks after the fraud (log-normal, median
  ``label_delay_days``, optionally capped at ``max_label_delay_days``; some never come); a few
  genuine transactions confirmed by reviews. Only labels known by the end of the world are
  written.
* A small share of events arrive late (the file is in arrival order, not time order).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.errors import MinderError

DAY = 86_400_000_000  # microseconds
HOUR = 3_600_000_000
COUNTRIES = np.array(["US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "MX", "BR"])
HOME_WEIGHTS = np.array([0.62, 0.08, 0.07, 0.06, 0.04, 0.04, 0.03, 0.03, 0.02, 0.01])
CATEGORIES = np.array(
    ["grocery", "fuel", "restaurant", "online_retail", "electronics", "travel", "jewelry"]
)
CAT_WEIGHTS = np.array([0.30, 0.15, 0.22, 0.18, 0.07, 0.05, 0.03])
CAT_AMOUNT = np.array([1.0, 0.9, 0.7, 1.2, 3.0, 4.0, 3.5])
ONLINE_CATS = {"online_retail", "electronics", "travel"}
# Relative intensity by hour of day (UTC, for simplicity): quiet nights, busy afternoons.
HOURLY = np.array(
    [
        0.2,
        0.12,
        0.08,
        0.06,
        0.06,
        0.1,
        0.3,
        0.6,
        0.9,
        1.0,
        1.1,
        1.2,
        1.3,
        1.2,
        1.1,
        1.1,
        1.2,
        1.3,
        1.3,
        1.2,
        1.0,
        0.8,
        0.5,
        0.3,
    ]
)


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the simulated world. ``days`` and ``cards`` set the size."""

    days: int = 90
    cards: int = 10_000
    seed: int = 7
    start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    txn_per_card_day: float = 2.5
    fraud_card_share: float = 0.05
    late_event_share: float = 0.005
    # "adaptive": the fraud scenarios take turns (concept drift, the default); "steady": all
    # four run the whole time (a stationary problem, for checking estimates of performance).
    schedule: str = "adaptive"
    # Chargeback delay: log-normal with this median (days) and a spread of 0.6 in log space
    # (95% within ~2.7x the median); capped at max_label_delay_days when set, e.g. a world
    # whose labels all arrive within a week: label_delay_days=2.5, max_label_delay_days=7.
    label_delay_days: float = 10.0
    max_label_delay_days: float | None = None

    def check(self) -> None:
        if not isinstance(self.days, int) or self.days < 1:
            raise MinderError(f"'days' must be a whole number >= 1. Got {self.days!r}.")
        if not isinstance(self.cards, int) or self.cards < 10:
            raise MinderError(f"'cards' must be a whole number >= 10. Got {self.cards!r}.")
        if self.schedule not in ("adaptive", "steady"):
            raise MinderError(f"'schedule' must be 'adaptive' or 'steady'. Got {self.schedule!r}.")
        if not 0.0 < self.fraud_card_share <= 0.5:
            raise MinderError(
                f"'fraud_card_share' must be in (0, 0.5]. Got {self.fraud_card_share!r}."
            )
        if not _positive_days(self.label_delay_days):
            raise MinderError(
                "'label_delay_days' (the median chargeback delay) must be a number of days "
                f"in (0, 365], like 10 or 2.5. Got {self.label_delay_days!r}."
            )
        cap = self.max_label_delay_days
        if cap is not None and not _positive_days(cap):
            raise MinderError(
                "'max_label_delay_days' (the longest chargeback delay) must be a number of "
                f"days in (0, 365], like 7, or None for no cap. Got {cap!r}."
            )


def _positive_days(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0.0 < float(value) <= 365.0  # NaN fails both comparisons
    )


@dataclass(frozen=True)
class World:
    """The generated world: events (arrival order), labels (known by the end), the truth."""

    events: pl.DataFrame
    labels: pl.DataFrame
    truth: pl.DataFrame


def _day_weights(cfg: WorldConfig) -> npt.NDArray[np.float64]:
    days = np.arange(cfg.days)
    weekday = (days + cfg.start.weekday()) % 7
    w = np.where(weekday >= 5, 1.15, 1.0)
    w = w * np.where(_holiday(cfg, days), 1.4, 1.0)
    return w.astype(np.float64)


def _holiday(cfg: WorldConfig, days: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    lo, hi = int(cfg.days * 0.55), int(cfg.days * 0.72)
    return (days >= lo) & (days < max(hi, lo + 1))


def _times(
    rng: np.random.Generator, n: int, day_p: npt.NDArray[np.float64], start_us: int
) -> npt.NDArray[np.int64]:
    day = rng.choice(len(day_p), size=n, p=day_p / day_p.sum())
    hour = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    sec = rng.integers(0, 3600, size=n)
    return (start_us + day * DAY + hour * HOUR + sec * 1_000_000).astype(np.int64)


def simulate(cfg: WorldConfig) -> World:
    """Generate the world described by ``cfg``.

    Examples
    --------
    >>> w = simulate(WorldConfig(days=3, cards=50, seed=1))
    >>> w.events.columns
    ['event_id', 'ts', 'card_id', 'merchant_id', 'amount', 'country', 'channel']
    >>> w.events.height == simulate(WorldConfig(days=3, cards=50, seed=1)).events.height
    True
    """
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    start_us = int(cfg.start.timestamp() * 1_000_000)
    n_cards = cfg.cards
    n_merch = max(50, n_cards // 10)

    # Merchants: category, country (mostly domestic to the dominant market), channel.
    m_cat = rng.choice(len(CATEGORIES), size=n_merch, p=CAT_WEIGHTS)
    m_country = rng.choice(len(COUNTRIES), size=n_merch, p=HOME_WEIGHTS)
    m_online = np.isin(CATEGORIES[m_cat], list(ONLINE_CATS)) & (rng.random(n_merch) < 0.8)
    m_pop = rng.pareto(1.5, size=n_merch) + 1.0

    # Cards: home country, spending level, rate, favourite merchants in the home country.
    c_home = rng.choice(len(COUNTRIES), size=n_cards, p=HOME_WEIGHTS)
    c_mu = rng.normal(3.4, 0.6, size=n_cards)
    c_rate = rng.gamma(2.0, cfg.txn_per_card_day / 2.0, size=n_cards)

    day_w = _day_weights(cfg)
    expected = c_rate * day_w.sum()
    counts = rng.poisson(expected)
    n = int(counts.sum())
    card = np.repeat(np.arange(n_cards), counts)
    ts = _times(rng, n, day_w, start_us)
    days = (ts - start_us) // DAY
    holiday = _holiday(cfg, days)

    # Merchant choice: a favourite-like stable pick (hash of card and a small slot) most of the
    # time, otherwise a popular merchant anywhere.
    slot = rng.integers(0, 12, size=n)
    by_country = [np.flatnonzero(m_country == k) for k in range(len(COUNTRIES))]
    fav = np.empty(n, np.int64)
    for k, pool in enumerate(by_country):
        sel = c_home[card] == k
        if not sel.any():
            continue
        if len(pool) == 0:
            pool = np.arange(n_merch)
        h = (card[sel] * 2654435761 + slot[sel] * 40503) % len(pool)
        fav[sel] = pool[h]
    rand_merch = rng.choice(n_merch, size=n, p=m_pop / m_pop.sum())
    merch = np.where(rng.random(n) < 0.85, fav, rand_merch)
    online_boost = holiday & (rng.random(n) < 0.25)
    online_pool = np.flatnonzero(m_online)
    if len(online_pool):
        merch = np.where(online_boost, rng.choice(online_pool, size=n), merch)

    amount = np.exp(c_mu[card] + rng.normal(0.0, 0.6, size=n)) * CAT_AMOUNT[m_cat[merch]]
    amount = amount * np.where(holiday, 1.3, 1.0)
    scenario = np.full(n, "", dtype=object)

    fraud_parts = _fraud(cfg, rng, start_us, c_home, m_cat, m_country, m_online, card, ts, merch)
    f_card, f_ts, f_merch, f_amount, f_scen = fraud_parts
    card = np.concatenate([card, f_card])
    ts = np.concatenate([ts, f_ts])
    merch = np.concatenate([merch, f_merch])
    amount = np.concatenate([amount, f_amount])
    scenario = np.concatenate([scenario, f_scen])
    is_fraud = scenario != ""

    channel = np.where(
        m_online[merch], "online", np.where(rng.random(len(merch)) < 0.35, "contactless", "pos")
    )
    country = COUNTRIES[m_country[merch]]
    amount = np.round(np.maximum(amount, 0.5), 2)

    # Arrival order: most events arrive at once, a few are late by minutes to hours.
    late = rng.random(len(ts)) < cfg.late_event_share
    arrival = ts + np.where(late, (rng.exponential(20.0, len(ts)) * 60e6).astype(np.int64), 0)
    order = np.lexsort((ts, arrival))
    total = len(ts)
    event_id = np.char.add("ev", np.char.zfill(np.arange(total).astype(str), 9))
    end_us = start_us + cfg.days * DAY
    events = pl.DataFrame(
        {
            "event_id": event_id,
            "ts": ts[order],
            "card_id": np.char.add("card", np.char.zfill(card[order].astype(str), 6)),
            "merchant_id": np.char.add("m", np.char.zfill(merch[order].astype(str), 5)),
            "amount": amount[order],
            "country": country[order],
            "channel": channel[order],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    truth = pl.DataFrame(
        {
            "event_id": event_id,
            "is_fraud": is_fraud[order].astype(np.int8),
            "scenario": scenario[order].astype(str),
        }
    )
    labels = _labels(rng, cfg, events, truth, end_us)
    return World(events=events, labels=labels, truth=truth)


def _fraud(
    cfg: WorldConfig,
    rng: np.random.Generator,
    start_us: int,
    c_home: npt.NDArray[np.int64],
    m_cat: npt.NDArray[np.int64],
    m_country: npt.NDArray[np.int64],
    m_online: npt.NDArray[np.bool_],
    card: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    merch: npt.NDArray[np.int64],
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.object_],
]:
    """Fraudulent transactions of the four scenarios (card, ts, merchant, amount, scenario)."""
    n_cards = len(c_home)
    span = cfg.days * DAY
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]] = []
    n_victims = max(4, int(n_cards * cfg.fraud_card_share))
    steady = cfg.schedule == "steady"

    def starts(a: float, width: float, n: int) -> npt.NDArray[np.int64]:
        """Start times of ``n`` attacks: in [a, a + width) of the span, or anywhere if steady."""
        a, width = (0.0, 0.93) if steady else (a, width)
        return start_us + int(a * span) + (rng.random(n) * width * span).astype(np.int64)

    expensive = np.flatnonzero(np.isin(CATEGORIES[m_cat], ["electronics", "jewelry", "travel"]))
    if len(expensive) == 0:
        expensive = np.arange(len(m_cat))

    # 1. big-ticket abroad, first ~35% of the time: bursts of 2-5 large purchases in hours.
    v = rng.choice(n_cards, size=n_victims, replace=False)
    t0 = starts(0.0, 0.35, n_victims)
    k = rng.integers(2, 6, size=n_victims)
    vc = np.repeat(v, k)
    vt = np.repeat(t0, k) + (rng.random(k.sum()) * 3 * HOUR).astype(np.int64)
    abroad = expensive[m_country[expensive] != 0]
    pool = abroad if len(abroad) else expensive
    vm = rng.choice(pool, size=len(vc))
    va = rng.uniform(400, 2500, size=len(vc))
    parts.append((vc, vt, vm, va, "big_ticket_abroad"))

    # 2. compromised terminals, ~30%-65%: cards seen at skimmed terminals are defrauded later
    #    at domestic merchants with ordinary-looking amounts.
    n_term = max(2, len(m_cat) // 200)
    terms = rng.choice(len(m_cat), size=n_term, replace=False)
    lo, hi = start_us + int(0.3 * span), start_us + int(0.5 * span)
    if steady:
        lo, hi = start_us, start_us + int(0.85 * span)
    seen = np.isin(merch, terms) & (ts >= lo) & (ts < hi)
    skimmed, first_seen = np.unique(card[seen], return_index=True)
    skim_ts = ts[seen][first_seen]
    if len(skimmed) > n_victims:
        pick = rng.choice(len(skimmed), size=n_victims, replace=False)
        skimmed, skim_ts = skimmed[pick], skim_ts[pick]
    k = rng.integers(1, 4, size=len(skimmed))
    vc = np.repeat(skimmed, k)
    if steady:  # each skimmed card is used 1-10 days after its visit
        vt = np.repeat(skim_ts, k) + ((1 + rng.random(len(vc)) * 9) * DAY).astype(np.int64)
    else:
        vt = hi + (rng.random(len(vc)) * 0.15 * span).astype(np.int64)
    domestic = np.flatnonzero(~m_online)
    vm = rng.choice(domestic if len(domestic) else np.arange(len(m_cat)), size=len(vc))
    va = np.exp(rng.normal(4.6, 0.5, size=len(vc)))
    parts.append((vc, vt, vm, va, "compromised_terminal"))

    # 3. low and slow, last ~40%: small online amounts, one or two a day for a week.
    v = rng.choice(n_cards, size=n_victims, replace=False)
    t0 = starts(0.6, 0.33, n_victims)
    k = rng.integers(3, 9, size=n_victims)
    vc = np.repeat(v, k)
    vt = np.repeat(t0, k) + (rng.random(k.sum()) * 7 * DAY).astype(np.int64)
    online = np.flatnonzero(m_online)
    vm = rng.choice(online if len(online) else np.arange(len(m_cat)), size=len(vc))
    va = rng.uniform(5, 30, size=len(vc))
    parts.append((vc, vt, vm, va, "low_and_slow"))

    # 4. threshold probing, last ~30%: amounts just under a round limit, repeated.
    v = rng.choice(n_cards, size=max(2, n_victims // 2), replace=False)
    t0 = starts(0.7, 0.25, len(v))
    k = rng.integers(3, 7, size=len(v))
    vc = np.repeat(v, k)
    vt = np.repeat(t0, k) + (rng.random(k.sum()) * 2 * DAY).astype(np.int64)
    vm = rng.choice(expensive, size=len(vc))
    va = rng.uniform(480, 499.99, size=len(vc))
    parts.append((vc, vt, vm, va, "threshold_probing"))

    end = start_us + span - 1
    out_c = np.concatenate([p[0] for p in parts]).astype(np.int64)
    out_t = np.minimum(np.concatenate([p[1] for p in parts]), end).astype(np.int64)
    out_t = (out_t // 1_000_000) * 1_000_000
    out_m = np.concatenate([p[2] for p in parts]).astype(np.int64)
    out_a = np.concatenate([p[3] for p in parts]).astype(np.float64)
    out_s = np.concatenate([np.full(len(p[0]), p[4], dtype=object) for p in parts])
    return out_c, out_t, out_m, out_a, out_s


def _labels(
    rng: np.random.Generator,
    cfg: WorldConfig,
    events: pl.DataFrame,
    truth: pl.DataFrame,
    end_us: int,
) -> pl.DataFrame:
    ts = events.get_column("ts").dt.epoch("us").to_numpy()
    fraud = truth.get_column("is_fraud").to_numpy() == 1
    idx_f = np.flatnonzero(fraud)
    # Chargebacks: log-normal delay, median label_delay_days (10 by default), capped when
    # asked; 8% are never reported. The cap draws no random numbers, so the rest of the world
    # is the same with or without it.
    median = float(cfg.label_delay_days)
    delay_f = (np.exp(rng.normal(np.log(median), 0.6, len(idx_f))) * DAY).astype(np.int64)
    if cfg.max_label_delay_days is not None:
        delay_f = np.minimum(delay_f, int(cfg.max_label_delay_days * DAY))
    keep_f = rng.random(len(idx_f)) >= 0.08
    idx_g = np.flatnonzero(~fraud)
    idx_g = idx_g[rng.random(len(idx_g)) < 0.01]
    delay_g = (rng.uniform(1.0, 3.0, len(idx_g)) * DAY).astype(np.int64)
    rows_idx = np.concatenate([idx_f[keep_f], idx_g])
    label_ts = np.concatenate([ts[idx_f[keep_f]] + delay_f[keep_f], ts[idx_g] + delay_g])
    is_fraud = np.concatenate([np.ones(keep_f.sum()), np.zeros(len(idx_g))])
    source = np.concatenate([np.full(keep_f.sum(), "chargeback"), np.full(len(idx_g), "review")])
    known = label_ts <= end_us
    # Gathered as a polars column so that an empty selection (a world too short for any label
    # to be known) stays text, not an unsortable NumPy object column.
    eid = events.get_column("event_id").gather(rows_idx[known])
    return (
        pl.DataFrame(
            {
                "event_id": eid,
                "is_fraud": is_fraud[known],
                "label_ts": label_ts[known],
                "source": source[known],
            }
        )
        .with_columns(pl.col("label_ts").cast(pl.Datetime("us", "UTC")))
        .sort("label_ts", "event_id")
    )
