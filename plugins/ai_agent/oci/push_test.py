from __future__ import annotations

from .push import PushStats


def test_push_stats_summary() -> None:
    stats = PushStats(uploaded_blobs=1, uploaded_bytes=3 * 1024 * 1024, present_blobs=2)
    stats.present_bytes, stats.mounted_blobs, stats.mounted_bytes = 100, 1, 1024
    assert stats.skipped_bytes == 1124
    assert str(stats) == (
        "uploaded 1 blobs (3.0 MiB), skipped 3 (1.1 KiB: 1 mounted, 2 already present),"
        " put 0 manifests, 0 retries"
    )
