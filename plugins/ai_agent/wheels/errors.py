"""The root of the wheels package's errors: each names the wheel, lock or member at fault."""


class WheelsError(Exception):
    """A lock, wheel or target that the wheels steps cannot turn into layers."""
