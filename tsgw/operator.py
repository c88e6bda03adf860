"""Wiring: builds the manager with every runnable (informers, controllers, the xDS server, the
extension server, the admin API). The only module that knows all the rooms; the CLI calls it.
"""
