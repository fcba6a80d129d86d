"""Fixtures shared by the test modules live in plugin modules listed here."""

pytest_plugins = ("tests.hub_fixtures",)
