"""The harness the tests and the benchmarks share: real parts, started for a test run.

- :mod:`.hubprocess`: a real ``jupyterhub`` process with the repository's
  ``tests/hub_config.py`` (or another config), and what a test asks of it
- :mod:`.kube_cluster`: a local Kubernetes control plane (etcd, kube-apiserver, scheduler,
  controller-manager) with fake GPU nodes (``scripts/setup-kube.sh`` builds it)
- :mod:`.databases`: fresh PostgreSQL databases (``scripts/setup-postgres.sh``)
- :mod:`.browser`: Debian's Chromium through Playwright, and a page logged in to a hub

Both ``tests/`` and ``benchmarks/`` import it as ``gpuspawner.testing``; a hub never does.
"""
