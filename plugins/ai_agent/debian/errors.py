"""The root of the debian package's errors: each names the lock, index, mirror or .deb at fault."""


class DebianError(Exception):
    """The root of this package's errors: `python -m ai_agent.debian` reports any of them (and
    the `oci` core's, whose layer writer it drives) as one `error: ...` line and exit status 2."""
