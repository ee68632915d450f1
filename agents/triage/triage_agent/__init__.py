"""HTTP service that sorts a batch of support tickets into per-intent queues."""
