"""The root of the cuda package's errors."""


class CudaError(Exception):
    """The root of this package's errors: what the plugin reports as a field's problem."""
