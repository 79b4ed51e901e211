"""Price tables: each pricing kind, how they combine, and the checks at config load."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from vidgate.config import ConfigError, load_settings
from vidgate.runs import catalog
from vidgate.runs.catalog import ModelSpec
from vidgate.runs.days import usage_range
from vidgate.runs.pricing import Pricing
from vidgate.runs.request import normalise
from vidgate.server.account_routes import balance_body
from vidgate.store.budgets import day_start
from vidgate.store.records import Balance


@pytest.mark.parametrize(
    ("pricing", "seconds", "resolution", "cost"),
    [
        (Pricing(), 5, "480p", 0.0),
        (Pricing(per_video_usd=0.35), 10, "1080p", 0.35),
        (Pricing(per_second_usd=0.1), 7, None, 0.7),
        (Pricing(per_video_usd=0.1, per_second_usd=0.05), 4, None, 0.3),
        (Pricing(by_resolution_usd={"480p": 0.72, "1080p": 1.8}), 5, "1080p", 1.8),
        (Pricing(by_resolution_usd={"480p": 0.72}, per_video_usd=0.5), 5, "720p", 0.5),
        (Pricing(per_second_by_resolution_usd={"480p": 0.1, "1080p": 0.3}), 4, "1080p", 1.2),
        (Pricing(per_second_by_resolution_usd={"480p": 0.1}, per_second_usd=0.2), 4, "720p", 0.8),
        (Pricing(by_duration_usd={5: 0.5, 10: 0.9}), 3, None, 0.5),
        (Pricing(by_duration_usd={5: 0.5, 10: 0.9}), 6, None, 0.9),
        (Pricing(by_duration_usd={5: 0.5, 10: 0.9}), 12, None, 0.9),
        (Pricing(by_resolution_usd={"480p": 1.0}, per_second_usd=0.01), 1.5, "480p", 1.015),
    ],
)
def test_each_pricing_kind(
    pricing: Pricing, seconds: float, resolution: str | None, cost: float
) -> None:
    assert pricing.cost(seconds, resolution) == pytest.approx(cost)


def test_a_request_without_resolution_or_duration_is_priced_at_the_models_defaults() -> None:
    spec = ModelSpec(
        slug="m",
        backend="testcard",
        name="M",
        parameters=catalog.testcard_parameters(),  # defaults: 5 s at 480p
        pricing=Pricing(per_second_by_resolution_usd={"480p": 0.1, "1080p": 0.4}),
    )
    assert spec.estimate_cost(normalise({"model": "m", "prompt": "p"})) == pytest.approx(0.5)
    request = normalise({"model": "m", "prompt": "p", "resolution": "1080p", "duration": 2})
    assert spec.estimate_cost(request) == pytest.approx(0.8)
    assert spec.cost(1.5, request) == pytest.approx(0.6)  # the seconds actually made


def test_the_catalog_shows_maps_by_resolution() -> None:
    offered = ["480p", "720p", "1080p"]
    table = Pricing(
        by_resolution_usd={"480p": 0.72, "1080p": 1.8}, per_video_usd=1.0, per_second_usd=0.01
    )
    assert table.to_json(offered) == {
        "currency": "USD",
        "per_video": {"480p": 0.72, "720p": 1.0, "1080p": 1.8},
        "per_second": {"480p": 0.01, "720p": 0.01, "1080p": 0.01},
    }
    assert Pricing().to_json(["480p"]) == {"currency": "USD", "per_video": {"480p": 0.0}}
    assert Pricing(per_video_usd=0.35).to_json() == {
        "currency": "USD",
        "per_video": {"default": 0.35},
    }
    rates = Pricing(per_second_by_resolution_usd={"720p": 0.1}, per_second_usd=0.05)
    assert rates.to_json(["480p", "720p"])["per_second"] == {"480p": 0.05, "720p": 0.1}
    tiers = Pricing(by_duration_usd={10: 0.9, 5: 0.5}).to_json(offered)
    assert tiers == {"currency": "USD", "per_duration": {"5": 0.5, "10": 0.9}}
    # Every map gives what a run at that resolution pays.
    for resolution, price in table.to_json(offered)["per_video"].items():
        assert table.cost(0, resolution) == price


def test_prices_load_from_config(tmp_path: Path) -> None:
    config = tmp_path / "vidgate.toml"
    config.write_text(
        '[models.t]\nbackend = "testcard"\n'
        'price_by_resolution_usd = {"480p" = 0.72, "1080p" = 1.8}\n'
        'price_by_duration_usd = {"5" = 0.5, "10" = 0.9}\n'
    )
    pricing = load_settings(config_file=config, env={}).models["t"].pricing
    assert pricing.by_resolution_usd == {"480p": 0.72, "1080p": 1.8}
    assert pricing.by_duration_usd == {5: 0.5, 10: 0.9}


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('price_by_resolution_usd = {"4k" = 3.0}', "names '4k', which the model does not offer"),
        ('price_per_second_by_resolution_usd = {"1080" = 0.1}', "names '1080'"),
        ('price_by_resolution_usd = {"480p" = -1}', "greater than or equal to 0"),
        ('price_by_duration_usd = {"0" = 1.0}', "greater than or equal to 1"),
        ('price_by_duration_usd = {"five" = 1.0}', "price_by_duration_usd"),
    ],
)
def test_bad_price_tables_are_refused_at_load(tmp_path: Path, table: str, needle: str) -> None:
    config = tmp_path / "vidgate.toml"
    config.write_text(f'[models.t]\nbackend = "testcard"\n{table}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=config, env={})
    assert "models.t" in str(info.value) and needle in str(info.value), str(info.value)


def test_balance_and_usage_range() -> None:
    assert balance_body(Balance(None, 1.5))["usd_balance"] == "Infinity"
    assert balance_body(Balance(2.0, 2.5))["usd_balance"] == "0.00000000"  # never negative
    assert balance_body(Balance(2.0, 0.25))["usd_balance"] == "1.75000000"
    today = dt.date(2026, 11, 30)
    first, last = usage_range(None, 30, today)
    assert (first.isoformat(), last) == ("2026-11-01", today)
    assert usage_range(dt.date.max, 5, today)[1] == dt.date.max
    assert day_start(86400 * 3 + 5.5) == 86400 * 3
