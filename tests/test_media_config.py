"""Media settings: checked at start-up, and no AWS SDK for the embedded default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from popmap_gql.config import ConfigError, load_settings
from tests.processes import ROOT, clean_env, serve_to_the_end, without_package


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POPMAP_MEDIA_BUCKET", "Popmap_Media"),
        ("POPMAP_MEDIA_BUCKET", "s3://popmap-media"),
        ("POPMAP_MEDIA_REGION", "Virginia"),
        ("POPMAP_MEDIA_REGION", ""),
        ("AWS_S3_ENDPOINT_URL", "127.0.0.1:5000"),
        ("POPMAP_MEDIA_BASE_URL", "cdn.popmap.co"),
        ("POPMAP_MEDIA_MAX_BYTES", "0"),
        ("POPMAP_MEDIA_MAX_BYTES", str(50 * 1024 * 1024 + 1)),
    ],
)
def test_malformed_media_setting_is_refused_with_its_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)


def test_media_settings_are_read() -> None:
    settings = load_settings(
        {
            "POPMAP_MEDIA_BUCKET": "popmap-media",
            "POPMAP_MEDIA_REGION": "eu-west-3",
            "POPMAP_MEDIA_BASE_URL": "https://cdn.popmap.co/",
            "POPMAP_MEDIA_MAX_BYTES": "1000000",
        },
        env_file=None,
    )

    assert settings.media_bucket == "popmap-media"
    assert settings.media_region == "eu-west-3"
    assert settings.media_base_url == "https://cdn.popmap.co"
    assert settings.media_max_bytes == 1_000_000


def test_the_embedded_default_never_imports_the_aws_sdk(tmp_path: Path) -> None:
    # The README's first command installs without the `s3` extra: nothing may need boto3.
    program = (
        "import sys\n"
        "from popmap_gql.app import create_app\n"
        "from popmap_gql.cli import build_parser\n"
        "from popmap_gql.config import load_settings\n"
        "from popmap_gql.media.uploads import build_store\n"
        "settings = load_settings({'POPMAP_DATA_DIR': sys.argv[1]}, env_file=None)\n"
        "create_app(settings); build_parser(); build_store(settings)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'boto3', 'botocore'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_serve_refuses_a_damaged_media_key_and_says_how_to_mend_it(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "media.key").write_bytes(b"short")  # a file cut off, or someone else's
    env = clean_env(DATABASE_URL=database_url, POPMAP_DATA_DIR=str(tmp_path))

    result = serve_to_the_end(env)

    assert result.returncode != 0
    assert f"{tmp_path / 'media.key'} is not a key made by popmap-gql;" in result.stderr
    assert "remove it to make a new one" in result.stderr
    assert (tmp_path / "media.key").read_bytes() == b"short"  # nothing overwritten


def test_serve_with_a_bucket_but_without_boto3_names_the_extra_to_install(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_env(
        DATABASE_URL=database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_MEDIA_BUCKET="popmap-media",
        PYTHONPATH=without_package(tmp_path, "boto3"),  # no `s3` extra
    )

    result = serve_to_the_end(env)

    assert result.returncode != 0
    assert (
        "POPMAP_MEDIA_BUCKET is set but boto3 is not installed: pip install 'popmap-gql[s3]'"
        in result.stderr
    )
