"""The spawn lifecycle every backend shares: catalog, quota, user options, progress, the
container's environment, and the refusals a user reads.

- :mod:`.base`: ``GPUSpawnerMixin``, mixed in before the engine's spawner class
- :mod:`.refusal`: ``SpawnRefused``, a spawn refused with a sentence
"""
