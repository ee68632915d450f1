"""Helpers behind the test fixtures: real components, started and stopped by the tests.

The integration tests (tests/) and the plugin's unit tests (plugins/**/*_test.py) share them:
`components.missing_component` is the one policy for a missing external component (skip on a
developer machine, fail under CI=true) and `http_stub` the one loopback HTTP server. Only
`pants_repo` and `pants_output` need the plugin and Pants itself; the other modules need only the
standard library and pytest.
"""
