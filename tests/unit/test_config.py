"""Configuration: the example file is complete and loads; precedence; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.config import ConfigError, Settings, load_settings
from vidgate.storage.location import S3Location

EXAMPLE = Path(__file__).parents[2] / "docs" / "vidgate.example.toml"


def test_example_config_loads_and_equals_the_defaults() -> None:
    loaded = load_settings(config_file=EXAMPLE, env={})
    assert loaded == Settings()


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    sections = (
        "server",
        "limits",
        "worker",
        "storage",
        "webhooks",
        "moderation",
        "metrics",
        "ui",
        "retention",
    )
    for section in sections:
        for key in type(getattr(Settings(), section)).model_fields:
            assert f"`{section}.{key}`" in doc, f"{section}.{key}"


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


_FAL = '[providers.fal]\nbase_url = "http://f"\n'
_ROUTE = '[[models.m.routes]]\nbackend = "{}"\n'


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
            "diffusers, fal, nanogpt, openai, openrouter, replicate, runway, testcard",
        ),
        ('[models.m]\nbackend = "fall"\nenabled = false\n', "unknown backend 'fall'"),
        (
            "[worker]\nlease_s = 10\nheartbeat_s = 10\n",
            "worker.heartbeat_s (10) must be below worker.lease_s (10)",
        ),
        ("[worker]\nheartbeat_s = 20\n", "worker.heartbeat_s (20) must be below"),
        ('durability = "paranoid"\n', "durability: Input should be 'normal' or 'full'"),
        (
            '[storage]\nurl = "gs://videos/x"\n',
            "invalid configuration in {config}: storage.url 'gs://videos/x': unsupported scheme "
            "'gs'; use a local directory (a path) or s3://bucket/prefix",
        ),
        ('[storage]\nurl = "s3:///videos"\n', "storage.url 's3:///videos' names no bucket"),
        ('[storage]\nurl = "s3://Videos/x"\n', "invalid bucket name 'Videos'"),
        (
            '[storage]\nurl = "s3://videos"\npath = "/srv/videos"\n',
            "storage.path (/srv/videos) is for a local directory, but storage.url is",
        ),
        (
            '[storage]\nurl = "s3://videos"\nurl_ttl_s = 700000\n',
            "storage.url_ttl_s (700000) is longer than the 604800 s (7 days) S3 allows",
        ),
        ('[storage]\nendpoint_url = "minio:9000"\n', "storage.endpoint_url: 'minio:9000' is"),
        ("[retention]\nruns_days = 30\n", "retention.runs_days (30) needs retention.videos_days"),
        (
            "[retention]\nvideos_days = 30\nruns_days = 7\n",
            "retention.runs_days (7) must be at least retention.videos_days (30)",
        ),
        ("[models.m]\nprice_usd = 1\n", "models.m: a model needs a backend (one provider) or"),
        (
            _FAL + '[models.m]\nprice_usd = 1\n[[models.m.routes]]\nbackend = "fal"\n',
            "models.m: price_usd belong in each of [[routes]] when a model lists routes",
        ),
        (
            _FAL + '[[models.m.routes]]\nbackend = "fal"\n[[models.m.routes]]\nbackend = "fal"\n',
            "models.m.routes[1]: provider 'fal' is already a route of this model",
        ),
        (
            _FAL
            + '[[models.m.routes]]\nbackend = "fal"\n[[models.m.routes]]\nbackend = "replicate"\n',
            "models.m.routes[1]: backend 'replicate' needs a [providers.replicate] section",
        ),
        (
            _FAL
            + '[[models.m.routes]]\nbackend = "testcard"\n[[models.m.routes]]\nbackend = "fal"\n',
            "models.m.routes[0]: backend 'testcard' renders on this machine and cannot be one",
        ),
        (
            _FAL + '[[models.m.routes]]\nbackend = "fal"\nmax_in_flight = 0\n',
            "models.m.routes.0.max_in_flight: Input should be greater than or equal to 1",
        ),
        (
            '[models.wan]\nbackend = "diffusers"\n',
            "models.wan.options: set exactly one of model_path (a local folder in diffusers "
            "layout) or model_id",
        ),
        (
            '[models.wan]\nbackend = "diffusers"\noptions = {model_path = "/m", dtyp = "fp16"}\n',
            "models.wan.options: dtyp: Extra inputs are not permitted (see docs/gpu.md)",
        ),
        (
            '[models.wan]\nbackend = "diffusers"\noptions = {model_path = "/m", mode = "image"}\n',
            "models.wan: options.mode is 'image', so set image_to_video = true",
        ),
        (
            '[models.wan]\nbackend = "diffusers"\n'
            'options = {model_path = "/m", sizes = {"480p" = [832, 470]}}\n',
            "sizes.480p: 832x470 must be even and a multiple of size_multiple (16)",
        ),
        (
            '[worker]\nmodels = ["testcard-video", "wan"]\n',
            "worker.models names 'wan', which is not a model of this configuration",
        ),
    ],
)
def test_invalid_configs_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(config_file=config, env={})
    assert needle.format(config=config) in str(info.value)


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


def test_storage_url_from_env_and_s3_keys_from_the_aws_variables(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[storage]\nurl = "/srv/videos"\nregion = "eu-west-3"\n')
    assert load_settings(config_file=config, env={}).storage_path == Path("/srv/videos")
    local = load_settings(config_file=config, env={"AWS_ENDPOINT_URL": "not a URL"}).storage
    assert local.endpoint_url is None  # the machine's AWS variables mean nothing locally
    env = {
        "VIDGATE_STORAGE_URL": "s3://videos/gateway/",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
    }
    storage = load_settings(config_file=config, env=env).storage
    assert storage.location == S3Location("videos", "gateway")
    assert storage.endpoint_url == "http://127.0.0.1:9000"
    assert storage.region == "eu-west-3"  # the file's own key wins over the machine's
    assert storage.access_key_id == "AKIAEXAMPLE"
    assert storage.secret_access_key is not None
    assert storage.secret_access_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(storage) and "s3cr3t-value" not in str(storage)


def test_local_storage_by_url_or_path(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).storage_path == tmp_path / "files"
    by_file_url = {"url": f"file://{tmp_path}/v"}
    assert Settings.model_validate({"storage": by_file_url}).storage_path == tmp_path / "v"
    both = {"url": str(tmp_path / "v"), "path": str(tmp_path / "v")}
    assert Settings.model_validate({"storage": both}).storage_path == tmp_path / "v"
    with pytest.raises(ValueError, match="name two directories"):
        Settings.model_validate({"storage": {"url": "/a", "path": "/b"}})


def test_one_provider_is_a_one_route_list_and_routes_keep_their_order(tmp_path: Path) -> None:
    from vidgate.services import build_catalog

    config = tmp_path / "c.toml"
    config.write_text(
        _FAL
        + '[providers.fal-eu]\nbase_url = "http://e"\n'
        + '[models.one]\nbackend = "fal"\nprovider_model = "x"\nprice_usd = 0.3\n'
        + '[[models.two.routes]]\nbackend = "fal"\nprovider = "fal-eu"\nprice_usd = 0.5\n'
        + '[[models.two.routes]]\nbackend = "fal"\nprovider_model = "y"\nmax_in_flight = 3\n'
    )
    catalog = build_catalog(load_settings(config_file=config, env={}))
    one, two = catalog.get("one"), catalog.get("two")
    assert [(r.provider, r.provider_model, r.pricing.per_video_usd) for r in one.all_routes] == [
        ("fal", "x", 0.3)
    ]
    assert [(r.provider, r.max_in_flight) for r in two.all_routes] == [("fal-eu", None), ("fal", 3)]
    assert (two.provider, two.pricing.per_video_usd) == ("fal-eu", 0.5)  # the first route's
    assert [spec.slug for spec in catalog].count("two") == 1


def test_worker_models_from_the_command_line_keep_the_files_worker_section(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[worker]\nconcurrency = 3\n")
    overrides = {"worker.models": ["testcard-video"]}
    settings = load_settings(config_file=config, env={}, overrides=overrides)
    assert settings.worker.models == ["testcard-video"]
    assert settings.worker.concurrency == 3
    with pytest.raises(ConfigError, match=r"worker\.models names 'wan-t2v', which is not a model"):
        load_settings(config_file=config, env={}, overrides={"worker.models": ["wan-t2v"]})


def test_a_missing_metrics_token_stops_what_serves_metrics_only(tmp_path: Path) -> None:
    """``vidgate keys`` and ``migrate`` load the settings without the service's environment
    file; only ``serve`` and ``worker``, which serve ``/metrics``, need the token."""
    config = tmp_path / "c.toml"
    config.write_text('[metrics]\ntoken_env = "VIDGATE_METRICS_TOKEN"\n')
    settings = load_settings(config_file=config, env={})
    with pytest.raises(ConfigError, match="token_env names VIDGATE_METRICS_TOKEN"):
        settings.metrics_token({})
    assert settings.metrics_token({"VIDGATE_METRICS_TOKEN": " t0ken "}) == "t0ken"
