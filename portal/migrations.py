"""Alembic, configured from the application's database URL."""

from __future__ import annotations

from alembic.config import Config

from portal.config import ROOT


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg
