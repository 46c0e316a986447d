"""The ingest agent with the real MiniLM cascade on the real broker: batches, DLQ, copies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.helpers import WorkerProcess, read_topic

pytestmark = pytest.mark.broker

POSTS = [
    ("q1", "Is it true that GLM-5 was trained entirely on Huawei Ascend chips?"),
    ("s1", "Zhipu confirms GLM-5 was trained on Huawei Ascend hardware"),
    ("c1", "Lovely sunset at the beach today"),
    ("p1", "Washington tightens rules on selling advanced AI accelerators to Beijing"),
]


def test_ingest_classifies_batches_with_the_model(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    ns = worker_env["SEISMO_NAMESPACE"]
    env = {
        **worker_env,
        "SEISMO_CLASSIFIER": "cascade",
        "SEISMO_CLASSIFY_BATCH_SIZE": "8",
        "SEISMO_PUBLISH_CLASSIFIED": "true",  # what the test reads
        "SEISMO_CLASSIFY_BATCH_WAIT_MS": "200",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:

        async def produce() -> None:
            p = AIOKafkaProducer(bootstrap_servers=kafka)
            await p.start()
            try:
                # sent without waiting, so they arrive together and share a batch
                futs = []
                for i, (pid, text) in enumerate(POSTS):
                    row = {
                        "id": pid,
                        "source": "x",
                        "text": text,
                        "created_at": f"2026-05-01T10:0{i}:00Z",
                    }
                    futs.append(
                        await p.send(
                            f"{ns}.posts.raw.v1", json.dumps(row).encode(), key=f"x:{pid}".encode()
                        )
                    )
                    if i == 1:  # a bad record in the middle of the batch
                        futs.append(await p.send(f"{ns}.posts.raw.v1", b"{broken", key=b"bad"))
                # the same post again at another offset: a copy, classified again (ingest
                # keeps no state; the detect stage counts it once)
                again = {
                    "id": "q1",
                    "source": "x",
                    "text": POSTS[0][1],
                    "created_at": "2026-05-01T10:00:00Z",
                }
                futs.append(
                    await p.send(f"{ns}.posts.raw.v1", json.dumps(again).encode(), key=b"x:q1")
                )
                await asyncio.gather(*futs)
            finally:
                await p.stop()

        asyncio.run(produce())
        out = asyncio.run(read_topic(kafka, f"{ns}.posts.classified.v1", len(POSTS) + 1))
        classified = [json.loads(v) for v in out]
        ids = [cp["post"]["id"] for cp in classified]
        assert sorted(ids) == sorted([*(pid for pid, _ in POSTS), "q1"])  # and the copy
        copies = [cp for cp in classified if cp["post"]["id"] == "q1"]
        assert copies[0]["claims"] == copies[1]["claims"]  # classified alike
        got = {cp["post"]["id"]: cp for cp in classified}
        assert all(cp["classifier"] == "minilm-cascade-v1" for cp in got.values())
        q = got["q1"]
        assert q["claims"][0]["claim"] == "glm5-trained-on-ascend"
        assert q["claims"][0]["stance"] == "query"
        assert "china-ai-rising" in q["dossiers"] and q["dossier_scores"]
        assert got["c1"]["dossiers"] == [] and got["c1"]["dossier_scores"] == {}  # not embedded
        assert "ai-export-controls" in got["p1"]["dossiers"]
        dlq = [json.loads(v) for v in asyncio.run(read_topic(kafka, f"{ns}.dlq.v1", 1))]
        assert len(dlq) == 1 and dlq[0]["stage"] == "ingest" and dlq[0]["key"] == "bad"
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
