"""The pipeline's stages composed in one process: post -> classified post -> alerts.

:class:`OfflinePipeline` runs the worker's own stage objects (``streams/stages.py``) on
in-memory tables, so evaluation, tests and benchmarks apply the same rules (classification,
detection, a post counted once) as the worker, without a broker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from models.classifier import Classifier
from seismo.config import Settings
from seismo.contracts import Alert, Post
from seismo.errors import SeismoError
from seismo.metrics import Metrics
from streams.detector import BurstEngine, DetectorParams
from streams.stages import DetectStage, IngestStage, Record, Rejected


def detector_params(settings: Settings) -> DetectorParams:
    return settings.detector.params()


class OfflinePipeline:
    """The ingest and detect stages in one process, on dicts for their tables.

    The posts fed are numbered as one raw partition in the order fed, and the classified
    posts as one classified partition (a post fed twice is a copy, skipped by the detect
    stage as the worker skips it). A record a stage rejects (the worker would send it to
    the DLQ) raises a :class:`~seismo.errors.SeismoError`: an evaluation must not leave
    posts out silently.
    """

    def __init__(
        self,
        classifier: Classifier,
        params: DetectorParams,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.ingest = IngestStage(classifier, self.metrics)
        self.detect = DetectStage(
            params,
            {},
            self.metrics,
            catch_up=_nothing_to_catch_up,
            checkpoint_seconds=math.inf,
            catch_up_batch=1,
            now=clock or (lambda: datetime.now(UTC)),
        )
        self.engine: BurstEngine = self.detect.engine(0)
        self._raw_offset = 0
        self._classified_offset = 0

    def feed(self, post: Post) -> list[Alert]:
        return self.feed_many((post,))

    def feed_many(self, posts: Iterable[Post]) -> list[Alert]:
        """Ingest the posts, then count them in one detector call (the same alerts as
        :meth:`feed` one by one, see :meth:`BurstEngine.observe_many`)."""
        raw = [Record(0, offset, post) for offset, post in enumerate(posts, self._raw_offset)]
        self._raw_offset += len(raw)
        ingested = self.ingest.handle(raw)
        _raise(ingested.rejected)
        first = self._classified_offset
        classified = [Record(0, first + i, cp) for i, (_, cp) in enumerate(ingested.posts)]
        self._classified_offset += len(classified)
        if not classified:
            return []
        detected = self.detect.count(0, classified)
        _raise(detected.rejected)
        return detected.alerts

    def run(self, posts: Iterable[Post]) -> Iterator[Alert]:
        for post in posts:
            yield from self.feed(post)


async def _nothing_to_catch_up(
    partition: int, start: int, end: int
) -> list[tuple[int, bytes | None]]:
    """Offline the engine is never behind its input: there are no records to read again."""
    return []


def _raise(rejected: Sequence[Rejected]) -> None:
    if rejected:
        r = rejected[0]
        raise SeismoError(f"{r.stage}: post {r.record.offset} rejected: {r.reason}")
