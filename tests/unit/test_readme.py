"""The README documents every setting exactly as the settings class declares it."""

from pathlib import Path

from earful.core.settings import Settings, settings_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_settings_table_is_current() -> None:
    assert settings_markdown() in README, "regenerate the table with `earful settings --markdown`"


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`EARFUL_{name.upper()}`" in README


def test_the_two_commands_are_shown() -> None:
    assert "make run" in README and "make test" in README
