#!/usr/bin/env python
"""Benchmark: how much the per-endpoint concurrency of the model client buys on a real vLLM server.

Starts one vLLM server on a tiny local model, then sends the same batch of
chat requests through harness.core.client.ModelClient (cache off) at several
concurrency limits, alternating the limits over repeats so machine noise hits
them all alike. Prints wall times and the ratio to the one-at-a-time loop.

    .venv/bin/python bin/bench_concurrency.py --requests 64 --max-tokens 128 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from harness.core.client import ModelClient, ModelRef, SamplingParams
from harness.core.tinymodel import TinyModelSpec, build_tiny_model
from harness.core.vllm import ServerManager, ServerSpec, ServingOptions


async def send_batch(ref: ModelRef, concurrency: int, requests: int, max_tokens: int, salt: int) -> float:
    client = ModelClient(ModelRef(ref.role, ref.identity, ref.endpoints, max_concurrency=concurrency, seeded=False), None)
    sampling = SamplingParams(temperature=0.7, max_tokens=max_tokens)
    prompts = [[{"role": "user", "content": f"Request {salt}-{i}: write about the sea."}] for i in range(requests)]
    start = time.perf_counter()
    await asyncio.gather(*(client.chat(p, sampling) for p in prompts))
    elapsed = time.perf_counter() - start
    await client.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limits", default="1,8,64")
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        model = build_tiny_model(Path(scratch) / "tiny", TinyModelSpec(seed=11))
        options = ServingOptions(device="auto", cpu_kv_cache_gib=2, log_dir=Path(scratch) / "logs")
        with ServerManager([ServerSpec("bench", model)], options) as endpoints:
            ref = ModelRef("bench", "bench", (endpoints["bench"],))
            asyncio.run(send_batch(ref, 8, 8, 16, -1))  # warm-up
            times: dict[int, list[float]] = {limit: [] for limit in limits}
            for repeat in range(args.repeats):
                order = limits if repeat % 2 == 0 else list(reversed(limits))
                for limit in order:
                    times[limit].append(asyncio.run(send_batch(ref, limit, args.requests, args.max_tokens, repeat * 100 + limit)))
    baseline = statistics.median(times[limits[0]])
    print(f"{args.requests} requests x {args.max_tokens} new tokens, median of {args.repeats} repeats")
    print(f"{'in flight':>10} {'wall s':>8} {'speed-up':>9}")
    for limit in limits:
        median = statistics.median(times[limit])
        print(f"{limit:>10} {median:>8.2f} {baseline / median:>8.1f}x")


if __name__ == "__main__":
    main()
