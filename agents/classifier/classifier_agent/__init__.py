"""HTTP service that routes free-text requests with a torch model, on a GPU when it has one."""
