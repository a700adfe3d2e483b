"""Every user-facing string exists in Chinese and English, and the catalogues match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask.testing import FlaskClient

LOCALES = ("zh_Hans_CN", "en")


def _catalog(root: Path, locale: str):  # type: ignore[no-untyped-def]
    with (root / "translations" / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=locale)


def _ids(catalog) -> set:  # type: ignore[no-untyped-def]
    return {m.id if isinstance(m.id, str) else tuple(m.id) for m in catalog if m.id}


@pytest.fixture(scope="module")
def extracted(project_root: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    subprocess.run(  # noqa: S603 - our own interpreter running Babel's extractor
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "--no-location",
            "-o",
            str(pot),
            ".",
        ],
        cwd=project_root,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as fh:
        return read_po(fh)


@pytest.mark.parametrize("locale", LOCALES)
def test_catalogue_holds_exactly_the_strings_in_the_code(project_root: Path, extracted, locale: str) -> None:  # type: ignore[no-untyped-def]
    catalog = _catalog(project_root, locale)
    missing = _ids(extracted) - _ids(catalog)
    assert not missing, f"untranslated in {locale}: run `make i18n` and translate {sorted(map(str, missing))}"
    stale = _ids(catalog) - _ids(extracted)
    assert not stale, f"strings no longer in the code, remove from {locale}: {sorted(map(str, stale))}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_string_is_translated_and_none_is_fuzzy(project_root: Path, locale: str) -> None:
    for message in _catalog(project_root, locale):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if locale == "en" and not any(strings):
            continue  # the English source text is the msgid itself
        assert all(strings), f"{locale}: no translation for {message.id!r}"
        assert not message.fuzzy, f"{locale}: fuzzy translation for {message.id!r}"
        if "%(" in str(message.id):
            for placeholder in {p.split(")")[0] for p in str(message.id).split("%(")[1:]}:
                assert all(f"%({placeholder})" in s for s in strings), (
                    f"{locale}: {message.id!r} lost a placeholder"
                )


def test_pages_follow_the_browser_language_and_the_users_choice(client: FlaskClient) -> None:
    chinese = client.get("/staff/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-Hans">' in chinese.get_data(as_text=True)
    assert "员工登录" in chinese.get_data(as_text=True)
    english = client.get("/staff/login", headers={"Accept-Language": "en-US"})
    assert "Staff sign-in" in english.get_data(as_text=True)

    response = client.post("/language", data={"lang": "zh_Hans_CN", "next": "/staff/login"})
    assert response.location == "/staff/login"
    chosen = client.get("/staff/login", headers={"Accept-Language": "en-US"})
    assert "员工登录" in chosen.get_data(as_text=True), "a chosen language beats the browser's"


def test_language_switch_refuses_unknown_languages_and_foreign_redirects(client: FlaskClient) -> None:
    response = client.post("/language", data={"lang": "xx", "next": "https://evil.example/"})
    assert response.location == "/"
    page = client.get("/", headers={"Accept-Language": "en"})
    assert "Staff sign-in" in page.get_data(as_text=True)


def test_error_messages_come_in_chinese(client: FlaskClient) -> None:
    response = client.post(
        "/staff/login",
        data={"email": "x@test.accord.example", "password": "wrong"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert "电子邮箱或密码不正确。" in response.get_data(as_text=True)
