"""The pipeline both modes share: inputs → translation → snapshots → the latest result.

It sits between the glue (providers, controllers, the extension server, the admin API) and
translation, and plays the part of Envoy Gateway's ``internal/message``: one runnable, a
watchable latest result, no knowledge of where its inputs come from. Standalone mode feeds it a
folder; the operator feeds it informers on every replica. See ``_pipeline.py`` for the flow and
``_programmed.py`` for the ``Programmed`` condition it derives from the Envoys' ACKs and NACKs.
"""

from tsgw.pipeline._pipeline import GroupKey, Pipeline, PipelineOptions, Published, Update
from tsgw.pipeline._programmed import (
    ACTIONABLE,
    PROGRAMMED,
    GroupState,
    HeldKey,
    RemoteNodes,
    held,
    merge_remote,
    programmed,
    read_report,
    report,
    with_programmed,
)
from tsgw.pipeline._watchable import Watchable

__all__ = [
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
