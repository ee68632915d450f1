"""Helpers behind the test fixtures: real components, started and stopped by the tests."""
