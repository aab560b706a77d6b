"""The bottom layer: model client and cache, vLLM servers, run store, task registry.

Nothing here imports judges/, trainers/ or the rest of harness/.
"""
