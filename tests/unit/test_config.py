"""Configuration: the example file is complete and loads; precedence; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.config import ConfigError, Settings, load_settings

EXAMPLE = Path(__file__).parents[2] / "docs" / "vidgate.example.toml"


def test_example_config_loads_and_equals_the_defaults() -> None:
    loaded = load_settings(config_file=EXAMPLE, env={})
    assert loaded == Settings()


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    sections = ("server", "limits", "worker", "storage", "webhooks", "moderation", "metrics")
    for section in sections:
        for key in type(getattr(Settings(), section)).model_fields:
            assert f"`{section}.{key}`" in doc or key == "kind", f"{section}.{key}"


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('data_dir = "from-file"\n[worker]\nconcurrency = 7\n')
    env = {"VIDGATE_CONFIG": str(config), "VIDGATE_DATA_DIR": "from-env"}
    assert load_settings(env=env).data_dir == Path("from-env")
    assert load_settings(env=env).worker.concurrency == 7
    assert load_settings(data_dir=Path("flag"), env=env).data_dir == Path("flag")
    env["VIDGATE_DATABASE_URL"] = "postgresql+asyncpg://x/y"
    assert load_settings(env=env).resolved_database_url == "postgresql+asyncpg://x/y"


def test_models_merge_with_the_builtin_ones(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[models."testcard-image-video"]\nbackend = "testcard"\nenabled = false\n')
    settings = load_settings(config_file=config, env={})
    assert set(settings.enabled_models()) == {"testcard-video"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[worker]\nconcurrency = 0\n", "worker.concurrency"),
        ("[server]\nbogus = 1\n", "server.bogus"),
        ("not toml = = =", "not valid TOML"),
        ('[models.m]\nbackend = "runway"\n', "[providers.runway]"),
        (
            '[models.m]\nbackend = "fall"\nprovider = "fal"\n[providers.fal]\nbase_url = "http://f"\n',
            "models.m.backend: unknown backend 'fall' (did you mean 'fal'?); known backends: "
            "fal, nanogpt, openai, replicate, runway, testcard",
        ),
        ('[models.m]\nbackend = "fall"\nenabled = false\n', "unknown backend 'fall'"),
        (
            "[worker]\nlease_s = 10\nheartbeat_s = 10\n",
            "worker.heartbeat_s (10) must be below worker.lease_s (10)",
        ),
        ("[worker]\nheartbeat_s = 20\n", "worker.heartbeat_s (20) must be below"),
        ('durability = "paranoid"\n', "durability: Input should be 'normal' or 'full'"),
    ],
)
def test_invalid_configs_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(config_file=config, env={})
    assert needle in str(info.value)


def test_durability_is_normal_unless_set(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('durability = "full"\n')
    assert Settings().durability == "normal"
    assert load_settings(config_file=config, env={}).durability == "full"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", env={})


def test_a_long_poll_bound_above_the_api_limit_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "vidgate.toml"
    config.write_text("[server]\nmax_wait_s = 300\n")
    with pytest.raises(ConfigError, match=r"server\.max_wait_s"):
        load_settings(config_file=config, env={})
