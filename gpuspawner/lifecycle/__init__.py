"""The spawn lifecycle every backend shares, and the contract a backend implements.

- :mod:`.base`: ``GPUSpawnerMixin``: the lifecycle and the backend contract
- :mod:`.env`: the one writer of the environment that tells a server its GPUs
- :mod:`.form`: the spawn form
- :mod:`.refusal`: ``SpawnRefused``, a spawn refused with a sentence
- :mod:`.shared`: what the spawners of a hub process share, and its one reset
"""
