"""Pure policy: no I/O, no engine, no hub. Each module is one decision, tested exhaustively.

- :mod:`.catalog`: the image catalog, pinning and group restrictions
- :mod:`.inventory`: the allocatable GPUs and MIG instances, GPU types, shared GPUs
- :mod:`.quota`: the GPU limit that applies to a user (a slot of a shared GPU counts 1/N)
- :mod:`.allocation`: which free GPUs or slot a spawn gets (``decide``), the hub's ``GpuPool``
- :mod:`.topology`: the closest free GPUs for a multi-GPU server
- :mod:`.options`: a spawn's ``user_options``, from the form or the REST API
- :mod:`.budget`: GPU-hour budgets: periods, weights, usage, refusals, deadlines
- :mod:`.cuda`: which image CUDA versions a driver can run
- :mod:`.merge`: how an admin's extra settings merge into a spec
"""
