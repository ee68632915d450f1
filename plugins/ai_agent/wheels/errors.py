"""The root of the wheels package's errors: each names the wheel, lock or member at fault."""


class WheelsError(Exception):
    """A lock, wheel or target that the wheels steps cannot turn into layers. The root of this
    package's errors: `python -m ai_agent.wheels` reports any of them (and those of the `debian`
    and `oci` cores it drives) as one `error: ...` line and exit status 2."""


class UsageError(WheelsError, ValueError):
    """A command-line value (`--wheel`, `--python`, `--prefix`, ...) is malformed."""
