"""tsgw.pipeline's public surface is curated: adding a name to ``__all__`` is a decision."""

import tsgw.pipeline


def test_pipeline_exports_exactly_the_curated_names() -> None:
    assert sorted(tsgw.pipeline.__all__) == sorted(
        [
            "ACTIONABLE",
            "PROGRAMMED",
            "GroupKey",
            "GroupState",
            "HeldKey",
            "Pipeline",
            "PipelineOptions",
            "Published",
            "RemoteNodes",
            "Update",
            "Watchable",
            "held",
            "merge_remote",
            "programmed",
            "read_report",
            "report",
            "with_programmed",
        ]
    )
    for name in tsgw.pipeline.__all__:
        assert hasattr(tsgw.pipeline, name), name
