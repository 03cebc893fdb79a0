"""What kopf would compute on every watch event for handler kinds this operator never
registers, turned off (`handlers.registration` installs it at start-up).

kopf builds a "diff base" for every event of every watched object: a deep copy of the whole
body minus metadata and status, kept to tell its change handlers (on.create/update/resume)
what changed. This operator has none: only event, index, startup and cleanup handlers, which
never read it. Profiled at 200 jobs, that copy was about a third of kopf's CPU per event
(bench/vs_kubeflow.py --py-spy, docs/operator.md "Performance against Kubeflow").
Adding a change handler means removing this: kopf would then see every object as new.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is empty and never stored (no change handlers read it)."""

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
