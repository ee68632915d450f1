"""The sbom core's root exception: what its command line reports as one `error: …` line."""


class SbomError(Exception):
    """The spec or a facts file is malformed or inconsistent; the message names it."""
