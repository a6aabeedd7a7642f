"""The memory bench (bench/memory.py, its entry point) in parts:

- settings: tenant, model, mixes of types, goals, thresholds, the console
- slots, frames_users, frames: the memories' vocabulary and frames (what a memory says)
- generate: distinct memories and planted paraphrases (``memory_set``)
- vectors: their vectors, made once and cached (``VectorCache``)
- stack: databases, streams, workers, seeding, jobs, CPU
- quality, scale, search: the three parts; report: their tables and goals
"""
